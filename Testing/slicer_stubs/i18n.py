"""``slicer.i18n`` stand-in: translation functions return the source text (English)."""


def tr(text: str) -> str:
    return text


def translate(context: str, text: str) -> str:
    return text
