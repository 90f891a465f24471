"""Helpers of the publish tests (imported by the tests and the conftest): the tokenizer and the annotate-like
dataset the fixtures build, a recording stand-in for the hub, a dry run of either kind, the card checks."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from annotate.format import ANNOTATION_CLOSE, ANNOTATION_OPEN, make_tags, render_annotation, tags_to_records
from posttrain.prompt_format import PromptFormat
from stage_io.manifest import write_manifest

TEXTS = [
    "Once upon a time a fox lived in the forest near the river.",
    "The market in Baghdad opened at dawn, and the traders shouted prices.",
    "Mrs Sinclair packed her bags and left the house without a word.",
    "The committee voted to raise interest rates by a quarter point.",
] * 4


@dataclass
class PosttrainLikeConfig:
    # The fields a posttrain config has that the card reads; the real one is richer.
    arm: str = "anchored"
    model: str = "runs/pretrain/anchored"
    learning_rate: float = 3e-4
    prompt_format: PromptFormat = field(default_factory=PromptFormat)


@dataclass
class AnnotateSchema:
    keys: list[str] = field(default_factory=lambda: ["topic", "entity", "location"])


@dataclass
class AnnotateLikeConfig:
    # Like the annotate stage's config: the key list sits in a schema section.
    schema: AnnotateSchema = field(default_factory=AnnotateSchema)
    annotator: str = "offline"


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<unk>", "<|endoftext|>", ANNOTATION_OPEN, ANNOTATION_CLOSE]
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(TEXTS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        eos_token="<|endoftext|>",
        extra_special_tokens=[ANNOTATION_OPEN, ANNOTATION_CLOSE],
    )


def write_annotated_dataset(out: Path, rows: int = 6, layout: str = "parquet") -> Path:
    """An annotate-like output dir. ``layout="parquet"``: ``data/data-SSSSS-of-NNNNN.parquet`` shards
    (what annotate/consolidate.py writes); ``"saved"``: a datasets save_to_disk directory."""
    import datasets

    tags = [make_tags([("topic", f"topic_{i % 3}"), ("location", "Baghdad")]) for i in range(rows)]
    data = datasets.Dataset.from_dict(
        {
            "id": [f"doc{i // 2}-{i % 2}" for i in range(rows)],
            "doc_id": [f"doc{i // 2}" for i in range(rows)],
            "chunk_index": [i % 2 for i in range(rows)],
            "text": [TEXTS[i % len(TEXTS)] for i in range(rows)],
            "tags": [tags_to_records(t) for t in tags],
            "annotation": [render_annotation(t) for t in tags],
            "status": ["ok"] * rows,
        }
    )
    if layout == "saved":
        data.save_to_disk(str(out / "data"))
    else:
        (out / "data").mkdir(parents=True)
        half = rows // 2
        data.select(range(half)).to_parquet(str(out / "data" / "data-00000-of-00002.parquet"))
        data.select(range(half, rows)).to_parquet(str(out / "data" / "data-00001-of-00002.parquet"))
    # The shape annotate/stats.py writes, plus a list the card cannot tabulate.
    stats = {
        "overall": {
            "chunks": rows,
            "ok": rows,
            "failed": 0,
            "skipped": 0,
            "documents": rows // 2,
            "mean_tags_per_ok_chunk": 2.0,
            "characters": 1234,
            "max_entropy_key": "topic",
            "max_entropy_bits": 1.585,
            "failure_reasons": {"timeout": 0},
        },
        "keys": {
            "topic": {
                "coverage": 1.0,
                "distinct_values": 3,
                "entropy_bits": 1.585,
                "top_values": [["topic_0", 2], ["topic_1", 2], ["topic_2", 2]],
            },
            "location": {"coverage": 1.0, "distinct_values": 1, "entropy_bits": 0.0, "top_values": [["Baghdad", rows]]},
        },
        "examples": [{"text": "a list of mappings the card cannot tabulate"}],
    }
    (out / "annotation_stats.json").write_text(json.dumps(stats), encoding="utf-8")
    (out / "work").mkdir()
    (out / "work" / "shard-00000-of-00001.jsonl").write_text("", encoding="utf-8")
    source = out.parent / "docs.jsonl"
    source.write_text(json.dumps({"id": "doc0", "text": TEXTS[0]}) + "\n", encoding="utf-8")
    write_manifest(
        out, stage="annotate", config=AnnotateLikeConfig(), inputs={"documents": source}, counts={"chunks": rows}
    )
    return out


class RecordingHub:
    """Stand-in for the three HfApi calls (no hub can be reached from the tests).

    Records every call; ``fail_on`` names a call that raises ``error`` instead. Returns
    the same types HfApi returns.
    """

    def __init__(
        self,
        user: str = "alice",
        orgs: tuple[str, ...] = ("lab",),
        fail_on: str | None = None,
        error: Exception | None = None,
    ):
        self.user, self.orgs = user, orgs
        self.fail_on, self.error = fail_on, error
        self.calls: list[tuple[str, dict]] = []
        self.tokens: list[str] = []

    def _call(self, name: str, **kwargs):
        self.calls.append((name, kwargs))
        if self.fail_on == name:
            raise self.error

    def whoami(self):
        self._call("whoami")
        return {"name": self.user, "orgs": [{"name": o} for o in self.orgs]}

    def create_repo(self, repo_id, *, repo_type, private, exist_ok):
        from huggingface_hub import RepoUrl

        self._call("create_repo", repo_id=repo_id, repo_type=repo_type, private=private, exist_ok=exist_ok)
        prefix = "datasets/" if repo_type == "dataset" else ""
        return RepoUrl(f"https://huggingface.co/{prefix}{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, repo_type, commit_message):
        from huggingface_hub import CommitInfo

        self._call(
            "upload_folder",
            repo_id=repo_id,
            folder_path=folder_path,
            repo_type=repo_type,
            commit_message=commit_message,
        )
        prefix = "datasets/" if repo_type == "dataset" else ""
        sha = "0123456789abcdef0123456789abcdef01234567"
        return CommitInfo(
            commit_url=f"https://huggingface.co/{prefix}{repo_id}/commit/{sha}",
            commit_message=commit_message,
            commit_description="",
            oid=sha,
        )

    def factory(self, token: str) -> "RecordingHub":
        self.tokens.append(token)
        return self


# The repository and license the dry runs of each kind publish under.
DRY_RUN_REPOS = {"model": ("lab/tiny-anchored", "apache-2.0"), "dataset": ("lab/tiny-annotated", "other")}


def publish_dry_run(kind: str, source: Path, staging: Path, hub: RecordingHub | None = None, **overrides) -> dict:
    """``publish.run`` of ``kind`` from ``source``, staged in ``staging``; ``hub`` records the hub calls, if any."""
    from publish import PublishConfig, run

    repo_id, license_id = DRY_RUN_REPOS[kind]
    config = PublishConfig(
        kind=kind, source_dir=str(source), repo_id=repo_id, staging_dir=str(staging), license=license_id, **overrides
    )
    return run(config, hub_factory=hub.factory if hub else None)


def assert_card_cites(text: str, phrases: tuple[str, ...], source_dir: Path, input_name: str) -> dict:
    """Every phrase is in the card ``text``, and so is the fingerprint of the source manifest's ``input_name``
    input; returns that manifest."""
    for phrase in phrases:
        assert phrase in text, phrase
    manifest = json.loads((source_dir / "manifest.json").read_text())
    assert manifest["inputs"][input_name]["fingerprint"] in text
    return manifest
