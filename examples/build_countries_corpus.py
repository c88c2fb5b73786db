"""Writes ``dspex/data/countries/`` (the RAG example's corpus and questions) from pycountry's copy of the
ISO 3166 tables (Debian's iso-codes, LGPL-2.1). The shipped files are this script's output; rerun it only
to rebuild them:

    pip install pycountry==26.2.16 && python examples/build_countries_corpus.py

One passage per country (249, ISO 3166-1) and per withdrawn country code (ISO 3166-3), naming its codes,
its official name and its subdivision types (ISO 3166-2); three kinds of question per country whose
answer stands only in its passage (alpha-3 code, numeric code, official name). Deterministic: the same
pycountry gives byte-identical files.
"""

from __future__ import annotations

import collections
import importlib.util
import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "dspex" / "data" / "countries"


def tables() -> tuple[list[dict], list[dict], list[dict]]:
    spec = importlib.util.find_spec("pycountry")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pycountry is not installed: pip install pycountry==26.2.16")
    root = Path(spec.submodule_search_locations[0]) / "databases"
    load = lambda name, key: json.loads((root / name).read_text(encoding="utf-8"))[key]  # noqa: E731
    return load("iso3166-1.json", "3166-1"), load("iso3166-2.json", "3166-2"), load("iso3166-3.json", "3166-3")


def plural(kind: str, n: int) -> str:
    kind = kind.lower()
    if n == 1:
        return kind
    if kind.endswith("y") and kind[-2:-1] not in "aeiou":
        return kind[:-1] + "ies"
    return kind + ("es" if kind.endswith(("s", "sh", "ch", "x", "z")) else "s")


def country_passage(country: dict, subdivisions: list[dict]) -> str:
    name = country["name"]
    text = f"{name}"
    if country.get("official_name"):
        text += f" (official name: {country['official_name']})"
    text += (f" is a country with ISO 3166-1 codes {country['alpha_2']} (alpha-2), {country['alpha_3']} "
             f"(alpha-3) and {country['numeric']} (numeric).")
    kinds = collections.Counter(s["type"] for s in subdivisions)
    if kinds:
        parts = [f"{n} {plural(kind, n)}" for kind, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))]
        examples = ", ".join(s["name"] for s in sorted(subdivisions, key=lambda s: s["code"])[:4])
        text += f" Its ISO 3166-2 subdivisions are {', '.join(parts)}, among them {examples}."
    else:
        text += " It has no ISO 3166-2 subdivisions."
    return text


def withdrawn_passage(entry: dict) -> str:
    codes = f"{entry['alpha_3']} (alpha-3)" + (f" and {entry['numeric']} (numeric)" if entry.get("numeric") else "")
    when = f" in {entry['withdrawal_date'][:4]}" if entry.get("withdrawal_date") else ""
    return (f"{entry['name']} is a former country: its ISO 3166-1 codes {codes} were withdrawn{when} "
            f"(ISO 3166-3 code {entry['alpha_4']}).")


def questions(country: dict) -> list[dict]:
    name = country["name"]
    rows = [{"question": f"What is the ISO 3166-1 alpha-3 code of {name}?", "answer": country["alpha_3"]},
            {"question": f"What is the ISO 3166-1 numeric code of {name}?", "answer": country["numeric"]}]
    if country.get("official_name"):
        rows.append({"question": f"What is the official name of {name}?", "answer": country["official_name"]})
    return rows


def main() -> None:
    countries, subdivisions, withdrawn = tables()
    by_country = collections.defaultdict(list)
    for sub in subdivisions:
        by_country[sub["code"].split("-")[0]].append(sub)
    countries = sorted(countries, key=lambda c: c["alpha_2"])
    corpus = [{"id": c["alpha_2"], "text": country_passage(c, by_country[c["alpha_2"]])} for c in countries]
    corpus += [{"id": w["alpha_4"], "text": withdrawn_passage(w)} for w in sorted(withdrawn, key=lambda w: w["alpha_4"])]
    qa = [{"id": f"{c['alpha_2']}-{i}", "source": c["alpha_2"], **q}
          for c in countries for i, q in enumerate(questions(c))]
    OUT.mkdir(parents=True, exist_ok=True)
    for name, rows in (("corpus.jsonl", corpus), ("questions.jsonl", qa)):
        (OUT / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(corpus)} passages, {len(qa)} questions -> {OUT}")


if __name__ == "__main__":
    main()
