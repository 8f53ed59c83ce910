"""migration.md and the drift section of `ft plan`: the values, laid out by
review/report/templates/migration.md.j2."""

from ..report.templating import render_template


def _pin(spec: dict) -> str:
    if spec.get("path"):
        return f"`{spec['path']}` sha256 `{spec['sha256']}`"
    tok = spec.get("tokenizer_revision")
    return f"`{spec['hub_id']}` @ `{spec['revision']}`" + (
        f" (tokenizer @ `{tok}`)" if tok and tok != spec["revision"] else ""
    )


def _row_text(row: dict) -> str:
    if "messages" in row:  # a chat row: its last two turns
        text = " → ".join(str(m.get("content", "")) for m in row["messages"][-2:])
    else:
        text = f"{row.get('prompt', '')} → {row.get('response', '')}"
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def _context(old: dict, new: dict, measured: dict, limit: int) -> dict:
    result, facts, arch = measured["result"], measured["facts"], measured["arch"]
    rows = result["_rows"]
    sets = [k for k in result if k != "_rows"]
    crossing = [
        {
            "name": name,
            "row": i,
            "before": result[name]["counts"][i][0],
            "after": result[name]["counts"][i][1],
            "what": "now truncated" if kind == "now_over" else "now fits",
            "text": _row_text(rows[name][i]),
        }
        for name in sets
        for kind in ("now_over", "now_fit")
        for i in result[name][kind]
    ]
    old_a, new_a = arch["old"], arch["new"]
    # Every field but the parameter count, the class list ("architectures") first.
    keys = [k for k in old_a if k != "parameters" and old_a[k] != new_a[k]]
    return {
        "from_pin": _pin(old),
        "to_pin": _pin(new),
        "drift": [(name, result[name]) for name in sets],
        "crossing": crossing,
        "limit": limit,
        "max_seq_len": result[sets[0]]["max_seq_len"] if crossing else None,
        "tok": facts,
        "specials": {side: _specials(facts[side]) for side in ("old", "new")},
        "params": {side: arch[side]["parameters"] for side in ("old", "new")},
        "changes": [f"{k} {old_a[k]} → {new_a[k]}" for k in keys],
    }


def body(old: dict, new: dict, measured: dict, heading: str = "##", limit: int = 25) -> list[str]:
    """The report without its title and next steps: `ft plan` shows the same lines."""
    text = render_template(
        "migration.md.j2",
        full=False,
        heading=heading,
        config_path=None,
        **_context(old, new, measured, limit),
    )
    return text.removesuffix("\n").split("\n")


def render(config_path: str, old: dict, new: dict, measured: dict, limit: int = 25) -> str:
    return render_template(
        "migration.md.j2",
        full=True,
        heading="##",
        config_path=config_path,
        **_context(old, new, measured, limit),
    )


def _specials(t: dict) -> str:
    return ", ".join(f"{n} `{v}`={i}" for n, (v, i) in t["special_tokens"].items()) or "none"
