"""settings.toml + secrets -> frozen, validated objects.

defaults.py  every default, in one place
values.py    reading typed values from a table, each bad one a problem with its key path
targets.py   the network kinds and [targets.*]
settings.py  [bridge], [[sources]], locating and loading the file, checks across sections
"""

from bridge.config.defaults import (  # noqa: F401 (the package's public names)
    CONFIG_SEARCH_PATH, DEFAULT_TEMPLATE, DEFAULT_TIMEZONE, LOG_LEVELS, SOURCE_KINDS,
)
from bridge.config.settings import (  # noqa: F401
    BridgeSettings, Config, SourceConfig, find_config_path, load_config, parse_config,
)
from bridge.config.targets import TARGET_KINDS, TargetConfig, TargetKind, TargetOption  # noqa: F401
from bridge.config.values import (  # noqa: F401
    FirstRun, parse_duration, parse_first_run, parse_listen_address, resolve_database_url,
)
