"""The little every stage shares (configs, CLI, manifests, records ...).

Importing it gives the project's loggers their console handlers (stage_io/log.py), so a
stage's messages print whether it runs from its CLI or is called from Python.
"""

from stage_io.log import install_handlers

install_handlers()
