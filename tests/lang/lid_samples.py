"""Hand-written sentences (answer-like length) for LID tests, incl. the hard pairs."""

SAMPLES: dict[str, list[str]] = {
    "en": [
        "To make a good cup of tea, boil fresh water and let the leaves steep for three minutes.",
        "The main reason the sky looks blue is that air scatters short wavelengths of light more strongly.",
    ],
    "fr": [
        "Pour préparer une bonne tasse de thé, faites bouillir de l'eau fraîche et laissez infuser trois minutes.",
        "La principale raison pour laquelle le ciel paraît bleu est la diffusion de la lumière par l'air.",
    ],
    "es": [
        "Para preparar una buena taza de té, hierve agua fresca y deja reposar las hojas tres minutos.",
        "La razón principal por la que el cielo se ve azul es que el aire dispersa más la luz de onda corta.",
    ],
    "ru": [
        "Чтобы заварить хороший чай, вскипятите свежую воду и дайте листьям настояться три минуты.",
        "Небо выглядит голубым, потому что воздух сильнее рассеивает коротковолновый свет.",
    ],
    "bg": [
        "За да направите хубав чай, сварете прясна вода и оставете листата да се запарят три минути.",
        "Небето изглежда синьо, защото въздухът разсейва по-силно светлината с къса дължина на вълната.",
    ],
    "zh": [
        "要泡一杯好茶，先把新鲜的水烧开，然后让茶叶浸泡三分钟。",
        "天空看起来是蓝色的，主要是因为空气对短波长的光散射得更强。",
    ],
    "bn": [
        "ভালো এক কাপ চা বানাতে তাজা পানি ফুটিয়ে পাতাগুলো তিন মিনিট ভিজিয়ে রাখুন।",
        "আকাশ নীল দেখায় কারণ বাতাস ছোট তরঙ্গদৈর্ঘ্যের আলো বেশি ছড়িয়ে দেয়।",
    ],
    "no": [
        "For å lage en god kopp te må du koke opp friskt vann og la bladene trekke i tre minutter.",
        "Hovedgrunnen til at himmelen ser blå ut, er at lufta sprer lys med kort bølgelengde mye mer enn annet lys.",
        "Jeg vet ikke hva du mener, men det er mange ting vi kan gjøre etter at vi har spist.",
    ],
    "da": [
        "For at lave en god kop te skal du koge frisk vand og lade bladene trække i tre minutter.",
        "Hovedårsagen til at himlen ser blå ud, er at luften spreder lys med kort bølgelængde meget mere.",
        "Jeg ved ikke hvad du mener, men der er mange ting vi kan gøre efter at vi har spist.",
    ],
}

# Short Danish and Russian questions: the tie-breakers must leave them alone.
DANISH_SHORT = [
    "Hvordan kan jeg blive bedre til at tale foran andre mennesker?",
    "Hvad betyder ordet alternativomkostning? Giv et eksempel.",
    "Jeg arbejder hjemmefra. Hvordan gør jeg mit hjemmekontor mere behageligt?",
    "Skriv en kort og venlig besked, hvor jeg inviterer naboerne til en lille havefest lørdag eftermiddag.",
    "Hvorfor har vi årstider på jorden?",
    "Hvilken ugedag er det om hundrede dage, hvis det er onsdag i dag?",
]
RUSSIAN_SHORT = [
    "Как действует вакцина?",
    "Напиши короткое и вежливое письмо хозяину квартиры с просьбой починить кран.",
    "Что лучше: заниматься спортом утром или вечером?",
]
