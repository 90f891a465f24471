"""Packing documents into fixed-length rows, with attention that never crosses a document.

The document stream (one epoch after another, each in its own seeded order) is cut into
rows of ``seq_len`` tokens. A document that does not fit in what is left of a row is
split there: its head ends this row, its tail starts the next as a new *piece*. Every
piece restarts its position ids at 0, so the tail cannot see the head (the price of
rows without padding); a document longer than ``seq_len`` is cut into several pieces the
same way. Rows are padded only when a finite stream runs out (``repeat=False``).

With ``rows_start_at_chunks`` (``data.rows_start_at_chunks``) a row is never cut inside a
chunk that fits a whole row: when the next chunk of the document (its annotation first,
in the anchored arm) does not fit in what is left of the row but would fit in a row of
its own, the rest of the row is padding and the chunk starts the next row as a new
piece. A chunk longer than a row is still cut at the row end. The rule is the same in
both arms (their chunk boundaries come from ``chunk_starts.npy``), so both still train on
the same number of slots; the padding is counted (``padding_slots``). Either way the
stream counts the content tokens whose own chunk's annotation is in the same piece
before them (``content_tokens_annotation_in_view``): the text-given-annotation
conditional the method relies on is trained only on those.

Per-document attention comes from the position ids alone. transformers 5 detects packed
rows in ``masking_utils.find_packed_sequence_indices`` (a new sequence wherever the
position id does not grow by one) and builds a block-diagonal causal mask for sdpa and
eager; flash_attention_2 turns the same position ids into ``cu_seqlens`` for the varlen
kernel, but only for a batch of one row, so for flash attention the batch is flattened
to ``(1, rows * seq_len)``. The flattened batch also carries ``cu_seq_lens_q/k`` and
``max_length_q/k`` (transformers' ``FlashAttentionKwargs``, as TRL's padding-free collator
passes them), computed here on the host from the position ids: without them every
attention layer derives them on the GPU itself, and ``max_length`` as a Python int costs
one device sync per layer. Two conditions, both checked in the tests:

- no 2D ``attention_mask`` is passed (the detection runs only without one);
- ``use_cache=False``: with the default ``use_cache=True`` the model builds a KV cache
  even in training, and with a cache present the packed-sequence detection is skipped,
  so documents would silently attend to each other.

Labels: -100 on padding and on the first token of every piece, so no token is ever
predicted from another document (or from a piece it cannot see).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from pretrain.sequences import TokenizedCorpus

IGNORE_INDEX = -100
# transformers' FlashAttentionKwargs: the flash varlen kernel's boundaries, precomputed per batch.
VARLEN_KEYS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")


@dataclass
class PackedRows:
    """``n`` rows of ``seq_len``: what one (global) batch is made of."""

    input_ids: np.ndarray  # (n, seq_len) int64
    position_ids: np.ndarray  # (n, seq_len) int64, 0 at the start of every piece
    labels: np.ndarray  # (n, seq_len) int64, IGNORE_INDEX at piece starts and padding
    is_annotation: np.ndarray  # (n, seq_len) bool

    def select(self, rows: slice) -> "PackedRows":
        return PackedRows(self.input_ids[rows], self.position_ids[rows], self.labels[rows], self.is_annotation[rows])

    def to_model_inputs(self, device: torch.device | str, flatten: bool = False) -> dict[str, torch.Tensor]:
        """Keyword arguments for the model; ``flatten`` puts all rows in one (for flash-attention varlen)."""
        inputs = {
            "input_ids": torch.from_numpy(self.input_ids),
            "position_ids": torch.from_numpy(self.position_ids),
            "labels": torch.from_numpy(self.labels),
        }
        if flatten:
            inputs = {k: v.reshape(1, -1) for k, v in inputs.items()}
        moved = {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
        if flatten:
            cu_seq_lens, max_length = varlen_boundaries(self.position_ids.reshape(-1))
            moved["cu_seq_lens_q"] = moved["cu_seq_lens_k"] = cu_seq_lens.to(device, non_blocking=True)
            moved["max_length_q"] = moved["max_length_k"] = max_length
        return moved


def varlen_boundaries(position_ids: np.ndarray) -> tuple[torch.Tensor, int]:
    """Cumulative sequence lengths (int32, starting at 0, ending at the total) and the longest
    sequence of a flattened packed row: a sequence starts wherever the position id is 0."""
    starts = np.flatnonzero(position_ids == 0)
    bounds = np.append(starts, len(position_ids)).astype(np.int32)
    return torch.from_numpy(bounds), int(np.diff(bounds).max())


@dataclass
class StreamCounters:
    """What the stream has handed out so far (exact; saved with every checkpoint)."""

    rows: int = 0
    slots: int = 0  # rows * seq_len
    tokens: int = 0  # real (non-padding) tokens
    annotation_tokens: int = 0
    loss_tokens: int = 0  # tokens with a label (real tokens minus piece starts)
    pieces: int = 0
    documents_started: int = 0
    documents_completed: int = 0
    split_at_row_end: int = 0  # pieces that a row end cut before their document's end
    epochs_completed: int = 0
    padding_slots: int = 0  # slots without a token (rows_start_at_chunks, or a finite stream's end)
    chunks_moved_to_next_row: int = 0  # rows padded early so that the next chunk starts a row whole
    content_tokens_chunk_start_in_view: int = 0  # content tokens whose own chunk starts in their piece
    # content tokens whose own chunk's annotation precedes them in their piece
    content_tokens_annotation_in_view: int = 0

    @property
    def content_tokens(self) -> int:
        return self.tokens - self.annotation_tokens

    @property
    def packing_efficiency(self) -> float:
        return self.tokens / self.slots if self.slots else 0.0

    @property
    def annotation_in_view_share(self) -> float | None:
        """Share of content tokens trained with their chunk's annotation in view (None without annotations)."""
        return self.content_tokens_annotation_in_view / self.content_tokens if self.annotation_tokens else None

    @property
    def chunk_start_in_view_share(self) -> float | None:
        """Share of content tokens trained with their chunk's start in view (either arm)."""
        return self.content_tokens_chunk_start_in_view / self.content_tokens if self.content_tokens else None

    def as_dict(self) -> dict:
        out = dict(self.__dict__)
        out["content_tokens"] = self.content_tokens
        out["packing_efficiency"] = self.packing_efficiency
        out["annotation_in_view_share"] = self.annotation_in_view_share
        out["chunk_start_in_view_share"] = self.chunk_start_in_view_share
        return out


@dataclass
class StreamPosition:
    """Where the stream is: the epoch, the document's place in that epoch's order, and the tokens of it already used."""

    epoch: int = 0
    index: int = 0
    offset: int = 0
    counters: StreamCounters = field(default_factory=StreamCounters)


class PackedStream:
    """Rows cut from the corpus, epoch after epoch (``repeat``), deterministic given the seed."""

    def __init__(
        self,
        corpus: TokenizedCorpus,
        seq_len: int,
        seed: int = 0,
        shuffle: bool = True,
        repeat: bool = True,
        pad_id: int = 0,
        rows_start_at_chunks: bool = False,
    ):
        self.corpus, self.seq_len, self.seed, self.shuffle = corpus, seq_len, seed, shuffle
        self.repeat, self.pad_id, self.rows_start_at_chunks = repeat, pad_id, rows_start_at_chunks
        self.position = StreamPosition()
        self._order_epoch, self._order = -1, np.empty(0, dtype=np.int64)

    @property
    def counters(self) -> StreamCounters:
        return self.position.counters

    @property
    def exhausted(self) -> bool:
        return not self.repeat and self.position.epoch > 0

    def order(self, epoch: int) -> np.ndarray:
        """Document order of ``epoch``: the same in both arms (same documents, same seed)."""
        if epoch != self._order_epoch:
            n = self.corpus.n_documents
            self._order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
            self._order_epoch = epoch
        return self._order

    def next_rows(self, n: int) -> PackedRows:
        shape = (n, self.seq_len)
        rows = PackedRows(
            input_ids=np.full(shape, self.pad_id, dtype=np.int64),
            position_ids=np.zeros(shape, dtype=np.int64),
            labels=np.full(shape, IGNORE_INDEX, dtype=np.int64),
            is_annotation=np.zeros(shape, dtype=bool),
        )
        for row in range(n):
            self._fill_row(rows, row)
        return rows

    def _fill_row(self, rows: PackedRows, row: int) -> None:
        pos, counters, corpus = 0, self.position.counters, self.corpus
        while pos < self.seq_len and not self.exhausted:
            position = self.position
            doc = int(self.order(position.epoch)[position.index])
            start, end = int(corpus.offsets[doc]), int(corpus.offsets[doc + 1])
            lo = start + position.offset
            take = self._piece_length(lo, end, self.seq_len - pos)
            if take == 0:  # the document's next chunk starts the next row
                counters.chunks_moved_to_next_row += 1
                break
            piece = corpus.tokens[lo : lo + take]
            rows.input_ids[row, pos : pos + take] = piece
            rows.labels[row, pos + 1 : pos + take] = piece[1:]  # the piece's first token has no context to predict it
            rows.position_ids[row, pos : pos + take] = np.arange(take)
            ann = np.asarray(corpus.is_annotation[lo : lo + take], dtype=bool)  # a plain array, not a memmap
            rows.is_annotation[row, pos : pos + take] = ann
            counters.tokens += take
            counters.loss_tokens += take - 1
            counters.annotation_tokens += int(ann.sum())
            counters.pieces += 1
            counters.documents_started += position.offset == 0
            self._count_in_view(lo, ann)
            pos += take
            position.offset += take
            if position.offset < end - start:
                if pos < self.seq_len:  # ended at a chunk start that fits the next row whole
                    counters.chunks_moved_to_next_row += 1
                    break
                counters.split_at_row_end += 1
                continue
            counters.documents_completed += 1
            position.offset = 0
            position.index += 1
            if position.index == corpus.n_documents:
                position.index = 0
                position.epoch += 1
                counters.epochs_completed += 1
        if pos < self.seq_len:  # padding: its own block of positions, no labels
            rows.position_ids[row, pos:] = np.arange(self.seq_len - pos)
            counters.padding_slots += self.seq_len - pos
        counters.rows += 1
        counters.slots += self.seq_len

    def _piece_length(self, lo: int, end: int, room: int) -> int:
        """Tokens of the document (flat tokens [lo, end)) that go into the ``room`` left in the row.

        Without rows_start_at_chunks: as many as fit. With it, the piece stops before the chunk
        that the row end would cut, if that chunk fits a whole row (0: it starts the next row).
        """
        if end - lo <= room or not self.rows_start_at_chunks:
            return min(end - lo, room)
        cut = lo + room
        starts = self.corpus.chunk_starts
        k = int(np.searchsorted(starts, cut, side="right")) - 1  # the chunk the cut falls in (or starts)
        chunk_start = int(starts[k])
        chunk_end = min(int(starts[k + 1]), end) if k + 1 < len(starts) else end
        if lo <= chunk_start < cut and chunk_end - chunk_start <= self.seq_len:
            return chunk_start - lo
        return room

    def _count_in_view(self, lo: int, ann: np.ndarray) -> None:
        """Count the piece's content tokens (flat [lo, lo + len(ann))) whose chunk starts in the piece,
        and those whose chunk's annotation precedes them in the piece.

        A chunk is [bos] annotation text: its content tokens after the annotation's first
        token see it; a chunk without an annotation has none to see.
        """
        starts, hi = self.corpus.chunk_starts, lo + len(ann)
        a, b = int(starts.searchsorted(lo)), int(starts.searchsorted(hi))
        if a == b:  # the piece continues a chunk begun in an earlier piece
            return
        counters = self.position.counters
        bounds = (starts[a:b] - lo).tolist() + [len(ann)]
        for chunk_begin, chunk_end in zip(bounds, bounds[1:]):
            chunk_ann = ann[chunk_begin:chunk_end]
            n_ann = int(chunk_ann.sum())
            content = chunk_end - chunk_begin - n_ann
            counters.content_tokens_chunk_start_in_view += content
            if n_ann:
                counters.content_tokens_annotation_in_view += content - int(chunk_ann.argmax())  # minus those before it

    def state_dict(self) -> dict:
        position = self.position
        return {
            "epoch": position.epoch,
            "index": position.index,
            "offset": position.offset,
            "counters": dict(position.counters.__dict__),
        }

    def load_state_dict(self, state: dict) -> None:
        self.position = StreamPosition(
            state["epoch"], state["index"], state["offset"], StreamCounters(**state["counters"])
        )


def pack_sequences(
    sequences: list[list[int]],
    seq_len: int,
    pad_id: int = 0,
    *,
    chunk_lengths: list[list[int]] | None = None,
    rows_start_at_chunks: bool = False,
    masks: list[list[bool]] | None = None,
) -> PackedRows:
    """Pack token sequences in the given order into as few rows as they need (padding the last)."""
    corpus = TokenizedCorpus.from_sequences(sequences, masks, chunk_lengths)
    stream = PackedStream(
        corpus, seq_len, shuffle=False, repeat=False, pad_id=pad_id, rows_start_at_chunks=rows_start_at_chunks
    )
    rows = []
    while not stream.exhausted:
        rows.append(stream.next_rows(1))
    return PackedRows(
        *(
            np.concatenate([getattr(row, f) for row in rows])
            for f in ("input_ids", "position_ids", "labels", "is_annotation")
        )
    )


def uses_varlen_flash(model_config) -> bool:
    """Whether the model attends with flash-attention (its varlen path needs the batch flattened)."""
    return str(getattr(model_config, "_attn_implementation", "")).startswith("flash")


def forward_packed(model, inputs: dict[str, torch.Tensor]):
    """The model on a packed batch: position ids and labels, no attention mask, no cache."""
    varlen = {k: inputs[k] for k in VARLEN_KEYS if k in inputs}  # flattened batches only
    return model(
        input_ids=inputs["input_ids"],
        position_ids=inputs["position_ids"],
        labels=inputs.get("labels"),
        use_cache=False,  # a cache disables transformers' packed-sequence masking (see the module docstring)
        **varlen,
    )
