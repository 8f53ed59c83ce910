"""How numbers, hashes and table cells are written in reports and the history page."""

SPARKS = "▁▂▃▄▅▆▇█"


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.2f}"
    return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3g}"


def fixed(value) -> str:
    """Four decimals, whatever the size: eval-suite metrics and gate values line up."""
    return "-" if value is None else f"{value:.4f}"


def signed(value: int) -> str:
    """An integer difference with its sign and thousands separators: +1,234, -56, +0."""
    return f"{value:+,}"


def short(value, n: int = 12) -> str:
    return "-" if value is None else str(value)[:n]


def cell(text) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def code(text) -> str:
    return "-" if text is None else f"`{cell(text)}`"


def delta(new, old, key: str = "") -> tuple[str, str]:
    """(signed difference with percentage, verdict) for numbers; ('', '') otherwise."""
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (new, old))
    if not numeric:
        return "", ""
    d = new - old
    if d == 0:
        return "0", ""
    pct = f" ({d / old * 100:+.1f}%)" if old else ""
    text = ("+" if d > 0 else "") + fmt(d) + pct
    verdict = ""
    if d and ("loss" in key or "perplexity" in key):
        verdict = "better" if d < 0 else "worse"
    return text, verdict


def sparkline(values: list[float], lo: float | None = None, hi: float | None = None) -> str:
    if not values:
        return ""
    lo = min(values) if lo is None else lo
    hi = max(values) if hi is None else hi
    span = (hi - lo) or 1.0
    return "".join(SPARKS[min(len(SPARKS) - 1, int((v - lo) / span * len(SPARKS)))] for v in values)
