"""Render the declared schema as Markdown (the README's catalog section is generated from this)."""

from __future__ import annotations

from stemcat.catalog.schema import TABLES


def schema_markdown() -> str:
    parts: list[str] = []
    for name, table in TABLES.items():
        if not table.exported:
            continue
        parts.append(f"#### `{name}`\n\n{table.doc}\n")
        parts.append("| column | type | meaning |\n|---|---|---|")
        for column in table.columns:
            if column.exported:
                parts.append(f"| `{column.name}` | {column.kind} | {column.doc} |")
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


if __name__ == "__main__":
    print(schema_markdown(), end="")
