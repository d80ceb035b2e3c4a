// polyinstruct annotate: keyboard shortcuts, streaming chat and arena. Model text is only
// ever written with textContent (never innerHTML), so it renders as text.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const page = document.body.dataset.page;
  const $ = (id) => document.getElementById(id);
  const typing = (el) => el && (el.tagName === "TEXTAREA" || el.tagName === "SELECT" ||
    (el.tagName === "INPUT" && !["radio", "checkbox"].includes(el.type)));

  function settings() {
    const out = {};
    for (const k of ["temperature", "top_p", "max_tokens", "repetition_penalty"]) out[k] = $(k).value;
    return out;
  }

  // POST JSON, then feed each streamed NDJSON event to onEvent; resolves when the stream ends.
  async function stream(url, body, onEvent) {
    const resp = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body), credentials: "same-origin" });
    if (!resp.ok) {
      let msg = resp.status + " " + resp.statusText;
      try { msg = (await resp.json()).error || msg; } catch (e) { /* not JSON */ }
      onEvent({ error: msg });
      return;
    }
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line) onEvent(JSON.parse(line));
      }
    }
  }

  async function postJSON(url, body) {
    const resp = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body), credentials: "same-origin" });
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(data.error || resp.statusText);
    return data;
  }

  function enterSubmits(textarea, form) {
    textarea.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
    });
  }

  if (page === "annotate") {
    const form = $("judge");
    if (!form) return;
    const prefs = form.querySelectorAll('input[name="preference"]');
    const toggle = (side) => {
      const yes = form.querySelector(`input[name="accept_${side}"][value="1"]`);
      const no = form.querySelector(`input[name="accept_${side}"][value="0"]`);
      (yes.checked ? no : yes).checked = true;
    };
    document.addEventListener("keydown", (e) => {
      if (e.altKey || e.metaKey) return;
      if (typing(document.activeElement)) {
        if (e.key === "Enter" && e.ctrlKey) { e.preventDefault(); form.requestSubmit(); }
        return;
      }
      if (e.ctrlKey) return;
      if (e.key >= "1" && e.key <= "5") { prefs[Number(e.key) - 1].checked = true; e.preventDefault(); }
      else if (e.key === "a" || e.key === "b") { toggle(e.key); e.preventDefault(); }
      else if (e.key === "Enter") { e.preventDefault(); form.requestSubmit(); }
    });
    form.addEventListener("submit", () => { $("submit").disabled = true; });
  }

  if (page === "chat" && $("chat-form")) {
    let history = [];
    const log = $("log"), input = $("input"), send = $("send");
    const bubble = (role, text) => {
      const div = document.createElement("div");
      div.className = "msg " + role;
      div.dir = "auto";
      div.classList.add("text");
      div.textContent = text;
      log.appendChild(div);
      return div;
    };
    $("reset").addEventListener("click", () => { history = []; log.textContent = ""; });
    enterSubmits(input, $("chat-form"));
    $("chat-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const text = input.value;
      if (!text.trim()) return;
      input.value = "";
      send.disabled = true;
      bubble("user", text);
      history.push({ role: "user", content: text });
      const out = bubble("assistant", "");
      let reply = "", failed = false;
      await stream("/api/chat", { engine: $("engine").value, messages: history, system: $("system").value,
        settings: settings() }, (ev) => {
        if (ev.text) { reply += ev.text; out.textContent = reply; }
        if (ev.error) { failed = true; out.classList.add("error"); out.textContent = reply + "\n[" + ev.error + "]"; }
      }).catch((err) => { failed = true; out.classList.add("error"); out.textContent = "[" + err + "]"; });
      if (failed) history.pop(); else history.push({ role: "assistant", content: reply });
      out.dataset.done = "1";
      send.disabled = false;
      input.focus();
    });
  }

  if (page === "arena" && $("arena-form")) {
    const input = $("input"), send = $("send"), vote = $("vote"), status = $("arena-status");
    const KEY = "polyinstruct-arena-round";
    let round = null;
    enterSubmits(input, $("arena-form"));
    // Stream both sides of a round. Asking a side again (after a reload or a lost connection)
    // gets the same answer from the server, never a new one.
    const play = async () => {
      send.disabled = true; vote.hidden = true;
      let ok = true;
      const side = (s) => {
        const el = $("arena-" + s);
        el.textContent = "";
        let text = "";
        return stream(`/api/arena/${round}/${s}`, {}, (ev) => {
          if (ev.text) { text += ev.text; el.textContent = text; }
          if (ev.error) { ok = false; el.textContent = text + "\n[" + ev.error + "]"; }
        });
      };
      await Promise.all([side("a"), side("b")]).catch((err) => { ok = false; status.textContent = String(err); });
      send.disabled = false;
      if (ok) { vote.hidden = false; status.textContent = "Both answers are in: vote below (keys 1-5)."; }
    };
    $("arena-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!input.value.trim()) return;
      send.disabled = true; vote.hidden = true; status.textContent = "";
      const body = { messages: [{ role: "user", content: input.value }], system: $("system").value, settings: settings() };
      try { round = (await postJSON("/api/arena", body)).round; } catch (err) {
        status.textContent = String(err); send.disabled = false; return;
      }
      sessionStorage.setItem(KEY, JSON.stringify({ round: round, prompt: input.value }));
      await play();
    });
    const saved = JSON.parse(sessionStorage.getItem(KEY) || "null");
    if (saved && saved.round) {  // an unvoted round from before a reload: show the same answers again
      round = saved.round;
      input.value = saved.prompt || "";
      status.textContent = "Resuming the round you had started.";
      play();
    }
    const cast = async (preference) => {
      if (vote.hidden || round === null) return;
      try {
        await postJSON(`/api/arena/${round}/vote`, { preference: Number(preference),
          accept_a: $("accept_a").checked ? 1 : 0, accept_b: $("accept_b").checked ? 1 : 0 });
        status.textContent = "Vote recorded. Ask another prompt for a new round.";
        vote.hidden = true; round = null; sessionStorage.removeItem(KEY);
      } catch (err) { status.textContent = "Vote not recorded: " + err; }
    };
    vote.querySelectorAll(".vote-btn").forEach((b) => b.addEventListener("click", () => cast(b.dataset.preference)));
    document.addEventListener("keydown", (e) => {
      if (!typing(document.activeElement) && e.key >= "1" && e.key <= "5") {
        cast(vote.querySelectorAll(".vote-btn")[Number(e.key) - 1].dataset.preference);
      }
    });
  }
})();
