import sys

from stage_io.cli import stage_main
from study.config import StudyConfig
from study.runner import run

if sys.argv[1:2] == ["init"]:  # python -m study init ...: write the configs for your own corpus
    from study.init import main

    raise SystemExit(main(sys.argv[2:]))
raise SystemExit(stage_main("study", StudyConfig, run))
