"""The experiment config schema (YAML), validated with errors naming file and field."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from polyinstruct.errors import UnknownNameError
from polyinstruct.eval.experiment import BenchmarkSettings
from polyinstruct.registry import Registry

# Where cells run (polyinstruct/experiment/executors.py), loaded on use: an Executor subclass per name.
EXECUTORS: Registry[Any] = Registry("executor")
EXECUTORS.register_lazy("local", "polyinstruct.experiment.executors:LocalExecutor")
EXECUTORS.register_lazy("ray", "polyinstruct.experiment.executors:RayExecutor")
EXECUTORS.register_lazy("slurm", "polyinstruct.experiment.executors:SlurmExecutor")

class CellResources(BaseModel):
    """What one cell asks of its executor (ignored by ``local``)."""

    model_config = ConfigDict(extra="forbid")

    gpus: int = Field(0, ge=0, description="GPUs per cell (Ray num_gpus, Slurm gpus_per_node)")
    cpus: int = Field(1, ge=1, description="CPU cores per cell")
    memory_gb: float | None = Field(None, gt=0, description="memory per cell (Ray memory, Slurm --mem)")


class SlurmSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    partition: str | None = None
    account: str | None = None
    time_min: int = Field(240, ge=1, description="wall time per cell job; on timeout the job is requeued")
    max_parallel: int | None = Field(None, ge=1, description="at most this many array tasks at once")
    folder: str | None = Field(None, description="submitit logs and scripts (default: <output_dir>/slurm)")
    setup: list[str] = Field(default_factory=list, description="shell lines run before the cell (module load...)")
    additional: dict[str, Any] = Field(default_factory=dict, description="other #SBATCH options by name")
    cluster: Literal["slurm", "local"] = Field("slurm", description="local: submitit's local executor (tests)")
    poll_s: float = Field(5.0, gt=0, description="how often the grid's progress is refreshed")


class ExecutorSettings(BaseModel):
    """The ``executor:`` section of an experiment config (docs/clusters.md)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("local", description="local | ray | slurm (polyinstruct.experiment.executors.EXECUTORS)")
    resources: CellResources = Field(default_factory=CellResources)
    max_retries: int = Field(2, ge=0, description="retries of a failed or killed cell (each resumes)")
    processes: int | None = Field(None, ge=1, description="training processes per cell (default: the cell's "
                                  "GPUs if more than one, else 1 = in-process)")
    accelerate_config: str | None = Field(None, description="accelerate config for multi-process cells "
                                          "(DDP, DeepSpeed or FSDP; examples/train/accelerate_*.yaml)")
    address: str | None = Field(None, description="ray: an existing cluster ('auto', 'ray://host:10001'); "
                                "none: a local one started for the run")
    workers: int | None = Field(None, ge=1, description="ray, local cluster: CPUs it offers (cells at once)")
    slurm: SlurmSettings = Field(default_factory=SlurmSettings)

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        try:
            EXECUTORS.get(name)
        except UnknownNameError as e:  # a ValueError for pydantic: the error names file and field
            raise ValueError(str(e)) from None
        return name

    def train_processes(self) -> int:
        return self.processes or (self.resources.gpus if self.resources.gpus > 1 else 1)


# An arm's preference stage (experiment/preference.py runs it): its config part.
SUFFIX = "+pref"


class PreferenceStage(BaseModel):
    """The ``preference:`` section of an experiment config."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: Literal["prefs", "data"] = Field("prefs", alias="from")
    data: str | None = None  # a preference file (from: data)
    k: int = Field(4, ge=1)  # answers sampled per prompt (from: prefs)
    prompts_per_language: int | None = Field(None, ge=1)  # training prompts per language to answer (None: all)
    max_new_tokens: int = Field(48, ge=1)
    reference_as_chosen: bool = False  # no good sampled answer: the prompt's reference answer is chosen
    train: dict[str, Any] = Field(default_factory=lambda: {"objective": "dpo"})  # overrides of the SFT config

    def stage_train_config(self, sft_config: dict[str, Any], *, model: str, data: str, output_dir: str
                           ) -> dict[str, Any]:
        """The stage's training config: the SFT cell's, with ``train`` on top, from the SFT model."""
        cfg = {**sft_config, **self.train, "model": model, "data": [data], "output_dir": output_dir}
        cfg.setdefault("objective", "dpo")
        return cfg


def split_arm(arm: str) -> tuple[str, bool]:
    """(the SFT arm kind, whether the arm has a preference stage)."""
    return (arm[:-len(SUFFIX)], True) if arm.endswith(SUFFIX) else (arm, False)


ARM_KINDS = ("base", "multi", "multi-down", "en-only", "mono")


class EvalSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompts_per_language: int | None = Field(None, ge=1, description="subset of the 50 prompts (None = all)")
    max_new_tokens: int = Field(128, ge=1)
    decoding: str = "greedy"
    batch_size: int = Field(16, ge=1)
    # Precision of the model that generates the answers. auto = bfloat16 where the device computes
    # it natively (CUDA with bf16, CPUs with AMX/AVX512-BF16), else float32; the resolved value is
    # in each cell's fingerprint and predicted.json (docs/experiments.md).
    dtype: Literal["float32", "bfloat16", "auto"] = "float32"
    # Benchmarks for every cell (polyinstruct eval; docs/evaluation.md, "In experiments and reports").
    benchmarks: BenchmarkSettings | None = None

    def resolved_dtype(self) -> str:
        if self.dtype != "auto":
            return self.dtype
        from polyinstruct.models.hardware import auto_dtype

        return auto_dtype()


class ExperimentConfig(BaseModel):
    """Seed 1's budget-controlled grid: arms x evaluation languages."""

    model_config = ConfigDict(extra="forbid")

    # Training fields written at the top level (or by their Hugging Face names) -> train.<field>.
    MOVED_FIELDS: ClassVar[dict[str, tuple[str, str]]] = {}

    name: str = "experiment"
    output_dir: str = "runs/experiment"
    model: str = Field(..., description="base model: path, packaged name or hub id")
    template: str = "tulu"
    method: str = "lora"
    train_languages: list[str] = ["en", "fr", "es", "ru", "bg", "zh"]
    eval_languages: list[str] = ["en", "fr", "es", "ru", "bg", "zh", "bn", "no"]
    english: str = "en"
    arms: list[str] = ["multi", "multi-down"]
    data: dict[str, str] | None = Field(
        None, description="language -> dataset name or path of parallel data; default: the embedded data")
    eval_data: dict[str, str] | None = Field(None, description="language -> evaluation prompts; default: embedded")
    eval_set: str = Field("embedded", description="embedded (the project's 50 prompts) | study1 (the authors' "
                          "published test set from GitHub) | study1:<folder> | study1@<commit>; docs/experiments.md")
    examples_per_language: int | None = Field(None, ge=1, description="use only the first N parallel ids")
    downsample_by: Literal["examples", "tokens"] = Field(
        "examples", description="multi-down arm: random sample of examples (study 1) or of content length")
    sizes: list[int] | None = Field(
        None, description="size axis (docs/analysis.md): examples per language at each grid point; every trained "
        "arm runs once per size as cell '<arm>@<size>', the base cell counts as size 0")
    train: dict[str, Any] = Field(default_factory=dict, description="training config fields for every arm")
    eval: EvalSettings = Field(default_factory=EvalSettings)
    judge: dict[str, Any] | None = None
    # the preference stage of arms named <kind>+pref (experiment/preference.py, docs/preference.md)
    preference: PreferenceStage | None = None
    lid: str = "auto"
    seed: int = 0
    # where cells run (local | ray | slurm), their resources and retries; docs/clusters.md
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)
    resume: Literal["auto", "never"] = Field(
        "auto", description="auto: continue, refusing results made with other settings; never: start over")

    @field_validator("train_languages", "eval_languages")
    @classmethod
    def _codes(cls, codes: list[str]) -> list[str]:
        from polyinstruct.lang.codes import validate_language_code

        for c in codes:
            validate_language_code(c)
        if not codes:
            raise ValueError("at least one language is needed")
        return codes

    @field_validator("eval_set")
    @classmethod
    def _eval_set(cls, value: str) -> str:
        from polyinstruct.evalsets.study1 import resolve_eval_set

        resolve_eval_set(value)
        return value

    @field_validator("english")
    @classmethod
    def _code(cls, code: str) -> str:
        from polyinstruct.lang.codes import validate_language_code

        return validate_language_code(code)

    @field_validator("data", "eval_data")
    @classmethod
    def _code_keys(cls, d: dict[str, str] | None) -> dict[str, str] | None:
        from polyinstruct.lang.codes import validate_language_code

        for c in d or {}:
            validate_language_code(c)
        return d

    @field_validator("arms")
    @classmethod
    def _check_arms(cls, arms: list[str]) -> list[str]:
        for a in arms:
            a, pref = split_arm(a)
            if pref and (a == "base" or a.startswith("mono")):
                raise ValueError(f"{a}+pref: a preference stage follows an SFT arm (multi, multi-down, en-only)")
            kind = "mono" if a.startswith("mono") else a
            if a.startswith("mono-"):  # mono-<lang>: the language names folders and files
                from polyinstruct.lang.codes import validate_language_code

                validate_language_code(a.split("-", 1)[1])
            if kind not in ARM_KINDS:
                from polyinstruct.registry import suggest

                raise ValueError(f"unknown arm {a!r}.{suggest(a, list(ARM_KINDS))} Known: "
                                 f"{', '.join(ARM_KINDS)}, mono-<lang>, <kind>+pref")
        if not arms:
            raise ValueError("at least one arm is needed")
        return arms

    @field_validator("sizes")
    @classmethod
    def _check_sizes(cls, sizes: list[int] | None) -> list[int] | None:
        if sizes is not None and (not sizes or any(n < 1 for n in sizes) or len(set(sizes)) != len(sizes)):
            raise ValueError("sizes must be distinct positive example counts per language")
        return sorted(sizes) if sizes else sizes

    def cells(self) -> list["Cell"]:
        """Expand arms into cells: ``mono`` becomes one cell per training language; with ``sizes``
        every trained cell repeats once per size (``multi@16``) and the base cell has size 0."""
        if self.sizes:
            plain = self.model_copy(update={"sizes": None}).cells()
            return [Cell(c.name, c.kind, c.eval_languages, size=0) if c.kind == "base" else
                    Cell(f"{c.name}@{n}", c.kind, c.eval_languages, size=n, preference=c.preference) for c in plain
                    for n in ([0] if c.kind == "base" else self.sizes)]
        out: list[Cell] = []
        for a in self.arms:
            if a == "mono":
                out += [Cell(f"mono-{lang}", "mono", [lang]) for lang in self.train_languages]
            elif a.startswith("mono-"):
                out.append(Cell(a, "mono", [a.split("-", 1)[1]]))
            else:
                kind, pref = split_arm(a)
                out.append(Cell(a, kind, list(self.eval_languages), preference=pref))
        return out


class Cell(BaseModel):
    """One trained (or untrained) model and the languages it is evaluated on."""

    name: str
    kind: str
    eval_languages: list[str]
    size: int | None = None  # examples per language on a size axis (None: no axis)
    preference: bool = False  # an arm <kind>+pref: SFT, then the preference stage

    def __init__(self, name: str, kind: str, eval_languages: list[str], size: int | None = None,
                 preference: bool = False):
        super().__init__(name=name, kind=kind, eval_languages=eval_languages, size=size, preference=preference)

    @property
    def arm_name(self) -> str:
        """The cell's name without its ``@size`` suffix (names its data file)."""
        return self.name.split("@", 1)[0]


def _moved_fields() -> dict[str, tuple[str, str]]:
    from polyinstruct.train.config import TrainConfig

    own = set(ExperimentConfig.model_fields)
    out = {f: (f"train.{f}", "training fields go under train:") for f in TrainConfig.model_fields if f not in own}
    for habit, (field, _) in TrainConfig.HABIT_NAMES.items():
        out.setdefault(habit, (f"train.{field}", f"training fields go under train:, and polyinstruct calls "
                                                 f"the Hugging Face/TRL {habit} {field}"))
    return out


ExperimentConfig.MOVED_FIELDS = _moved_fields()
