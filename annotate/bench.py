"""Throughput of the offline annotator: ``python -m annotate.bench [CONFIG] [key=value ...]``.

Defaults to configs/annotate/embedded.yaml (the whole BBC corpus). Prints the fit time
(embedding every fit chunk, KMeans, cluster naming) and the chunks per second of
annotating every chunk afresh (embedding included, as eval pays it on new text), plus
the text-feature part alone. A script that prints figures, never a test.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

from annotate.chunking import Chunker
from annotate.config import AnnotateConfig
from annotate.offline import OfflineAnnotator, load_embedder
from annotate.stage import fit_sample
from annotate.units import load_input
from stage_io.config import load_config

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "annotate" / "embedded.yaml"


def main(argv: list[str]) -> None:
    import torch
    from threadpoolctl import threadpool_limits

    path = argv[0] if argv and "=" not in argv[0] else str(DEFAULT_CONFIG)
    overrides = argv[1:] if argv and "=" not in argv[0] else argv
    config = load_config(AnnotateConfig, path, ["progress=false", *overrides])
    torch.set_num_threads(config.num_threads)
    offline = config.annotator.offline
    with threadpool_limits(limits=config.num_threads):
        source = load_input(config)
        chunker = Chunker(config.chunking)
        ids, texts = fit_sample(config, source, chunker)
        start = time.perf_counter()
        load_embedder(offline)  # loaded once per process; not part of the fit
        load_s = time.perf_counter() - start

        start, cpu = time.perf_counter(), time.process_time()
        annotator = OfflineAnnotator.fit(ids, texts, offline, config.schema, progress=False)
        fit_s, fit_cpu = time.perf_counter() - start, time.process_time() - cpu
        annotator._cached_embeddings.clear()  # annotate below embeds afresh, as on new text

        start, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(texts), config.batch_size):
            annotator.annotate_batch(ids[i : i + config.batch_size], texts[i : i + config.batch_size])
        annotate_s, annotate_cpu = time.perf_counter() - start, time.process_time() - cpu

        start = time.perf_counter()
        for text in texts:
            annotator.tags_for(text, annotator.topic_names[0], annotator.domain_names[0])
        features_s = time.perf_counter() - start

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f} (other processes share it)"
    )
    print(
        f"corpus: {config.source.source}, {len(source)} documents, {len(texts)} chunks; "
        f"embedder {offline.embedder} at {offline.embed_max_tokens} tokens"
    )
    print(f"embedder load: {load_s:.1f} s")
    print(
        f"fit: {fit_s:.1f} s wall ({fit_cpu:.1f} s CPU) for {len(texts)} chunks "
        f"({offline.topic_clusters} topic / {offline.domain_clusters} domain clusters)"
    )
    print(
        f"annotate: {len(texts) / annotate_s:.1f} chunks/s ({annotate_s:.1f} s wall, {annotate_cpu:.1f} s CPU, "
        "embedding included)"
    )
    print(f"text features alone: {len(texts) / features_s:.0f} chunks/s")


if __name__ == "__main__":
    main(sys.argv[1:])
