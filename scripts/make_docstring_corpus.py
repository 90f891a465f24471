"""Write a corpus the project has never seen, from what pip installed: the docstrings of eight Python libraries.

The own-corpus path (``python -m study init``) needs a labelled corpus, an SFT set and prompts, and no hub is
reachable. Docstrings of installed libraries are real prose of a few paragraphs each, with a label column that
an independent classifier can learn (the library: ``numpy``, ``scipy``, ``pandas``, ``sklearn``, ``sympy``,
``networkx``, ``matplotlib``, ``torch``). The SFT set is narrow on purpose, like the embedded default's sports
SFT: every response is a ``networkx`` docstring, so plain SFT can collapse towards that library.

    python scripts/make_docstring_corpus.py OUT_DIR     # OUT_DIR/{corpus,sft,prompts}.jsonl + OUT_DIR/sources.json

The texts depend on the installed library versions, which ``sources.json`` records.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.metadata
import inspect
import json
import random
from pathlib import Path

LIBRARIES = ["numpy", "scipy", "pandas", "sklearn", "sympy", "networkx", "matplotlib", "torch"]
# Pip distribution names where they differ from the import name (for the recorded versions).
DISTRIBUTIONS = {"sklearn": "scikit-learn"}
SFT_LIBRARY = "networkx"
DOCS_PER_LIBRARY = 400
SFT_EXAMPLES = 120
# A docstring this long is a document of a few paragraphs: shorter ones are one-line summaries, longer ones are
# tutorials whose code blocks dominate.
MIN_CHARS, MAX_CHARS = 400, 2500
SFT_PROMPTS = [
    "Write the documentation for a library function.",
    "Document a Python function: what it does, its parameters and what it returns.",
    "Write a docstring for a routine in a scientific Python library.",
    "Explain a library function the way its reference documentation would.",
]
EVAL_PROMPTS = [
    "Write the documentation for a library function.",
    "Document a Python routine, with its parameters and return value.",
    "Write the reference documentation of a function from a Python library.",
]


def docstrings(library: str) -> list[str]:
    """Every function and class docstring in the library's source files, cleaned, in file order."""
    root = Path(importlib.import_module(library).__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        if "tests" in path.parts or "testing" in path.parts:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                text = ast.get_docstring(node)
                if text:
                    found.append(inspect.cleandoc(text))
    return found


def usable(text: str) -> bool:
    return MIN_CHARS <= len(text) <= MAX_CHARS and "\n\n" in text


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    corpus, sft_pool, counts = [], [], {}
    for library in LIBRARIES:
        texts = sorted(set(filter(usable, docstrings(library))))
        rng.shuffle(texts)
        if len(texts) < DOCS_PER_LIBRARY:
            raise SystemExit(f"{library}: {len(texts)} usable docstrings, fewer than {DOCS_PER_LIBRARY}")
        chosen = texts[:DOCS_PER_LIBRARY]
        corpus += [{"id": f"{library}-{i}", "library": library, "text": t} for i, t in enumerate(chosen)]
        counts[library] = {"usable": len(texts), "in_corpus": len(chosen)}
        if library == SFT_LIBRARY:
            sft_pool = texts[DOCS_PER_LIBRARY : DOCS_PER_LIBRARY + SFT_EXAMPLES]
    rng.shuffle(corpus)
    sft = [
        {
            "messages": [
                {"role": "user", "content": SFT_PROMPTS[i % len(SFT_PROMPTS)]},
                {"role": "assistant", "content": text},
            ]
        }
        for i, text in enumerate(sft_pool)
    ]
    write_jsonl(args.out_dir / "corpus.jsonl", corpus)
    write_jsonl(args.out_dir / "sft.jsonl", sft)
    write_jsonl(args.out_dir / "prompts.jsonl", [{"prompt": p} for p in EVAL_PROMPTS])
    versions = {lib: importlib.metadata.version(DISTRIBUTIONS.get(lib, lib)) for lib in LIBRARIES}
    sources = {"libraries": counts, "versions": versions, "sft_library": SFT_LIBRARY, "seed": args.seed}
    (args.out_dir / "sources.json").write_text(json.dumps(sources, indent=2) + "\n")
    print(f"{len(corpus)} documents, {len(sft)} SFT examples, {len(EVAL_PROMPTS)} prompts -> {args.out_dir}")


if __name__ == "__main__":
    main()
