"""The one tokenizer both arms share, built once and saved beside the runs.

Both arms MUST tokenize with the identical tokenizer: a plain-pretrained model is later
SFT-ed with annotations (ablation ``anchored_sft_on_plain``), so its vocabulary must hold
the annotation delimiters too, with the same ids. The tokenizer is therefore built once,
saved to ``tokenizer.path`` with a ``manifest.json`` saying how it was made, and reused
by every later run whose tokenizer config and training text match; a mismatch is an
error, never a silent rebuild under a model that was trained with the old one.

Choices:

- Embedded default: a byte-level BPE (every string encodes, no unknown token) trained
  with ``tokenizers`` on the chunk *text*; the vocabulary never depends on the arm.
  With ``tokenizer.train_on_annotations`` the BPE also learns from every chunk's
  annotation (its tags, delimiters removed), so keys and frequent values (``topic``,
  ``domain``) become single tokens instead of word-internal pieces (``t op ic``); both
  arms still share the one tokenizer, and the option is part of its identity. Real
  runs load an existing tokenizer by hub id or path (``tokenizer.pretrained``; the paper-scale configs use OLMo-2's).
- Annotation delimiters: ``annotate.format.SPECIAL_TOKENS`` (``<|ann|>``, ``<|/ann|>``)
  are added as special tokens to either tokenizer: one id each, never split, never made
  by BPE from ordinary text. Decode with ``skip_special_tokens=False`` wherever the
  annotation must survive (``split_generation`` needs the delimiters).
- Tag order inside an annotation is the canonical schema order of ``annotate.format``
  (``canonical_order``); the annotate stage renders the ``annotation`` column that way,
  and pretraining uses it verbatim.
- The trained tokenizer has ``<|bos|>``, ``<|eos|>`` and ``<|pad|>``; calling it with
  ``add_special_tokens=True`` (the default) prepends ``<|bos|>``, as every training
  document starts, so prompts at evaluation time start the same way.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Callable, Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from annotate.format import ANNOTATION_CLOSE, ANNOTATION_OPEN, SPECIAL_TOKENS
from stage_io.hf_files import make_tokenizer_config_portable
from stage_io.manifest import read_manifest, write_manifest
from stage_io.model_paths import check_tokenizer
from stage_io.run_identity import changed_keys

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"


class TokenizerMismatchError(ValueError):
    """A saved tokenizer that was built from a different config or training text."""


def prepare_tokenizer(cfg, training_texts: Callable[[], Iterable[str]]) -> PreTrainedTokenizerBase:
    """The shared tokenizer: loaded from ``cfg.path`` if its manifest matches, else built and saved.

    ``cfg`` is a ``TokenizerSection``; ``training_texts`` yields the texts a BPE is
    trained on (chunk texts, and annotation tags with ``train_on_annotations``; called only
    when no hub tokenizer is configured).
    """
    path = Path(cfg.path)
    identity = _identity(cfg, training_texts)
    if path.exists():
        return _load_checked(path, identity)
    if cfg.pretrained is None:
        tokenizer = train_bpe(training_texts(), cfg.vocab_size, cfg.min_frequency)
    else:
        check_tokenizer(cfg.pretrained, "tokenizer.pretrained", cfg.revision)
        tokenizer = AutoTokenizer.from_pretrained(cfg.pretrained, revision=cfg.revision)
    add_annotation_tokens(tokenizer)
    # Save to a private folder, then rename: a concurrent run (the other arm) either sees
    # nothing or the complete tokenizer, and the first one to finish wins.
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    save_tokenizer(tokenizer, tmp)
    write_manifest(tmp, stage="pretrain.tokenizer", config=cfg, extra={"tokenizer_identity": identity})
    try:
        os.rename(tmp, path)
    except OSError:  # someone else saved it first: use theirs if it matches
        shutil.rmtree(tmp, ignore_errors=True)
    return _load_checked(path, identity)


def train_bpe(
    texts: Iterable[str],
    vocab_size: int,
    min_frequency: int = 2,
    special_tokens: Sequence[str] = (PAD, BOS, EOS, *SPECIAL_TOKENS),
) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on ``texts``, wrapped for transformers, with bos/eos/pad
    (``special_tokens`` get the first ids, in order; bos, eos and pad must be among them)."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    bos_id = core.token_to_id(BOS)
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD)


def add_annotation_tokens(tokenizer: PreTrainedTokenizerBase) -> None:
    """Register the annotation delimiters as special tokens (kept beside any the tokenizer has)."""
    tokenizer.add_special_tokens({"extra_special_tokens": list(SPECIAL_TOKENS)}, replace_extra_special_tokens=False)
    if tokenizer.pad_token is None:  # many base tokenizers have none; padding is never trained on
        tokenizer.pad_token = tokenizer.eos_token
    for token in SPECIAL_TOKENS:
        ids = tokenizer.encode(token, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"annotation delimiter {token!r} does not encode to one token (got {ids})")


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, path: str | Path) -> None:
    """``save_pretrained``, with a config that transformers 4 (e.g. inside vLLM) also loads."""
    tokenizer.save_pretrained(str(path))
    make_tokenizer_config_portable(path)


def annotation_token_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[int, int]:
    """Ids of the opening and closing annotation delimiters."""
    return tokenizer.convert_tokens_to_ids(ANNOTATION_OPEN), tokenizer.convert_tokens_to_ids(ANNOTATION_CLOSE)


def strip_delimiters(annotation: str) -> str:
    """An annotation's tags without its delimiters: the text a BPE may learn merges from
    (the delimiters are special tokens, split out before BPE ever sees the text)."""
    return annotation.replace(ANNOTATION_OPEN, "").replace(ANNOTATION_CLOSE, "").strip()


def _identity(cfg, training_texts: Callable[[], Iterable[str]]) -> dict:
    """What makes two tokenizers the same: the source, and for a trained one its text."""
    if cfg.pretrained is not None:
        return {
            "kind": "pretrained",
            "pretrained": cfg.pretrained,
            "revision": cfg.revision,
            "annotation_tokens": list(SPECIAL_TOKENS),
        }
    digest = hashlib.sha256()
    count = 0
    for text in training_texts():
        digest.update(text.encode("utf-8") + b"\0")
        count += 1
    identity = {
        "kind": "trained_bpe",
        "vocab_size": cfg.vocab_size,
        "min_frequency": cfg.min_frequency,
        "special_tokens": [PAD, BOS, EOS, *SPECIAL_TOKENS],
        "training_texts": count,
        "training_text_sha256": digest.hexdigest(),
    }
    # Named only when on, so tokenizers saved before the option existed (chunk text only) still match.
    if getattr(cfg, "train_on_annotations", False):
        identity["train_on_annotations"] = True
    return identity


def _load_checked(path: Path, identity: dict) -> PreTrainedTokenizerBase:
    manifest = read_manifest(path)
    saved = (manifest or {}).get("tokenizer_identity")
    if saved != identity:
        differing = changed_keys(saved or {}, identity)
        raise TokenizerMismatchError(
            f"{path}: a tokenizer is saved there but was built differently "
            f"(differs in: {', '.join(differing) or 'no manifest'}). Both arms must share one tokenizer: "
            "point tokenizer.path at a new folder, or delete this one if no model uses it."
        )
    check_tokenizer(str(path), "tokenizer.path")
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    add_annotation_tokens(tokenizer)  # a no-op check for a tokenizer saved by prepare_tokenizer
    return tokenizer
