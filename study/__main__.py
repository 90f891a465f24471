import sys

from stage_io.cli import stage_main
from study.config import StudyConfig
from study.paths import resolve_paths, study_file
from study.runner import run

if sys.argv[1:2] == ["init"]:  # python -m study init ...: write the configs for your own corpus
    from study.init import main

    raise SystemExit(main(sys.argv[2:]))
# Paths of a study written with relative_to: study_file resolve against the YAML's folder (study/paths.py).
STUDY_FILE = study_file(sys.argv[1:])
raise SystemExit(
    stage_main("study", StudyConfig, lambda cfg: run(resolve_paths(cfg, STUDY_FILE.parent if STUDY_FILE else None)))
)
