"""Configuration loading and validation (F04): defaults, precedence, env parsing, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nexusd import paths
from nexusd.config.loader import (
    ConfigError,
    backend_id,
    load_config,
    parse_config,
    resolve_config_path,
)
from nexusd.config.schema import (
    DEFAULT_PROBE_PORTS,
    MIB,
    LogFormat,
    LogLevel,
    NexusConfig,
    RoutingStrategy,
)
from nexusd.types import BackendType, ModelOverride, PrivacyZone

REPO = Path(__file__).resolve().parents[2]
SHARE_EXAMPLE = REPO / "share" / "nexus.example.toml"
PACKAGE_EXAMPLE = REPO / "nexusd" / "config" / "nexus.example.toml"


def backend(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": "box", "url": "http://127.0.0.1:11434", "type": "ollama"}
    entry.update(overrides)
    return entry


def parse(data: dict[str, Any] | None = None, **kwargs: Any) -> NexusConfig:
    cfg, _warnings, _sources = parse_config(data or {}, **kwargs)
    return cfg


def problems(data: dict[str, Any], **kwargs: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, **kwargs)
    return info.value.problems


# --- defaults ------------------------------------------------------------------------------


def test_empty_data_gives_all_defaults() -> None:
    cfg, warnings, sources = parse_config({}, env={}, flags={})
    assert warnings == []
    assert sources == {}
    assert cfg.server.port == 8000
    assert cfg.server.host == "127.0.0.1"
    assert cfg.server.max_body_bytes == 10 * MIB == 10_485_760
    assert cfg.routing.strategy is RoutingStrategy.SMART
    assert cfg.routing.max_retries == 2
    w = cfg.routing.weights
    assert (w.priority, w.load, w.latency) == (50, 30, 20)
    h = cfg.health_check
    assert h.enabled is True
    assert (h.interval_seconds, h.timeout_seconds) == (30, 5)
    assert (h.failure_threshold, h.recovery_threshold) == (3, 2)
    assert cfg.discovery.enabled is True
    assert cfg.discovery.probe_ports == DEFAULT_PROBE_PORTS
    assert cfg.discovery.service_types == ["_ollama._tcp.local.", "_llm._tcp.local."]
    assert cfg.logging.level is LogLevel.INFO
    assert cfg.logging.format is LogFormat.PRETTY
    assert cfg.backends == []
    assert cfg.routing.aliases == {} and cfg.routing.fallbacks == {}


def test_defaults_are_not_shared_between_configs() -> None:
    a, b = parse(), parse()
    a.discovery.probe_ports.append(1)
    a.routing.aliases["x"] = "y"
    assert b.discovery.probe_ports == DEFAULT_PROBE_PORTS
    assert b.routing.aliases == {}


# --- the shipped example -------------------------------------------------------------------


def test_example_file_in_share_is_identical_to_the_packaged_one() -> None:
    assert SHARE_EXAMPLE.exists()
    assert SHARE_EXAMPLE.read_bytes() == PACKAGE_EXAMPLE.read_bytes()


def test_example_file_loads_without_warnings() -> None:
    loaded = load_config(SHARE_EXAMPLE, env={})
    assert loaded.file_exists is True
    assert loaded.warnings == []
    cfg = loaded.config
    assert cfg.routing.aliases["gpt-4"] == "llama3:70b"
    assert cfg.routing.aliases["gpt-3.5-turbo"] == "mistral:7b"
    assert cfg.routing.fallbacks["llama3:70b"] == ["qwen2:72b", "mixtral:8x7b"]
    assert [b.name for b in cfg.backends] == ["local-ollama"]
    ollama = cfg.backends[0]
    assert ollama.type is BackendType.OLLAMA
    assert ollama.priority == 1
    assert ollama.url == "http://localhost:11434"
    assert loaded.source_of("server.port") == "file"
    assert loaded.source_of("routing.decision_history") == "default"


# --- precedence: flag > env > file > default -----------------------------------------------

PRECEDENCE = [
    # dotted key, env var, file value, env value, flag value, attribute getter, expected parse
    ("server.port", "NEXUS_PORT", 1111, "2222", 3333, lambda c: c.server.port, (1111, 2222, 3333)),
    (
        "server.host",
        "NEXUS_HOST",
        "file.example",
        "env.example",
        "flag.example",
        lambda c: c.server.host,
        ("file.example", "env.example", "flag.example"),
    ),
    (
        "logging.level",
        "NEXUS_LOG_LEVEL",
        "debug",
        "WARN",
        "error",
        lambda c: c.logging.level,
        (LogLevel.DEBUG, LogLevel.WARN, LogLevel.ERROR),
    ),
]


@pytest.mark.parametrize(
    ("dotted", "var", "file_value", "env_value", "flag_value", "get", "expected"), PRECEDENCE
)
def test_precedence_flag_over_env_over_file_over_default(
    dotted: str,
    var: str,
    file_value: Any,
    env_value: str,
    flag_value: Any,
    get: Any,
    expected: tuple[Any, Any, Any],
) -> None:
    section, key = dotted.split(".")
    data = {section: {key: file_value}}

    cfg, _, sources = parse_config({}, env={}, flags={})
    assert dotted not in sources  # default

    cfg, _, sources = parse_config(data, env={})
    assert get(cfg) == expected[0]
    assert sources[dotted] == "file"

    cfg, _, sources = parse_config(data, env={var: env_value})
    assert get(cfg) == expected[1]
    assert sources[dotted] == "env"

    cfg, _, sources = parse_config(data, env={var: env_value}, flags={dotted: flag_value})
    assert get(cfg) == expected[2]
    assert sources[dotted] == "flag"


def test_flag_set_to_none_does_not_override() -> None:
    cfg, _, sources = parse_config({"server": {"port": 1234}}, flags={"server.port": None})
    assert cfg.server.port == 1234
    assert sources["server.port"] == "file"


def test_env_overrides_without_a_file_section() -> None:
    cfg, _, sources = parse_config({}, env={"NEXUS_PORT": "9001", "NEXUS_HOST": "0.0.0.0"})
    assert cfg.server.port == 9001
    assert cfg.server.host == "0.0.0.0"
    assert sources == {"server.port": "env", "server.host": "env"}


def test_parse_config_does_not_mutate_its_input() -> None:
    data = {"server": {"port": 1}}
    parse_config(data, env={"NEXUS_PORT": "2"}, flags={"server.host": "h"})
    assert data == {"server": {"port": 1}}


# --- environment parsing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("TRUE", True),
        ("true", True),
        ("1", True),
        ("Yes", True),
        ("on", True),
        (" On ", True),
        ("off", False),
        ("FALSE", False),
        ("0", False),
        ("no", False),
    ],
)
def test_env_booleans(text: str, expected: bool) -> None:
    cfg, warnings, sources = parse_config({}, env={"NEXUS_DISCOVERY": text})
    assert cfg.discovery.enabled is expected
    assert warnings == []
    assert sources["discovery.enabled"] == "env"


def test_env_boolean_garbage_is_ignored_with_a_warning() -> None:
    cfg, warnings, sources = parse_config(
        {"discovery": {"enabled": False}}, env={"NEXUS_DISCOVERY": "banana"}
    )
    assert cfg.discovery.enabled is False  # the file's value stays
    assert sources["discovery.enabled"] == "file"
    assert len(warnings) == 1
    assert "NEXUS_DISCOVERY" in warnings[0] and "banana" in warnings[0]


def test_env_port_not_a_number_is_ignored_with_a_warning() -> None:
    cfg, warnings, sources = parse_config({}, env={"NEXUS_PORT": "abc"})
    assert cfg.server.port == 8000
    assert "server.port" not in sources
    assert len(warnings) == 1
    assert "NEXUS_PORT" in warnings[0] and "abc" in warnings[0]


def test_empty_env_value_is_ignored_silently() -> None:
    cfg, warnings, sources = parse_config({}, env={"NEXUS_PORT": "", "NEXUS_DISCOVERY": ""})
    assert cfg.server.port == 8000 and cfg.discovery.enabled is True
    assert warnings == [] and sources == {}


@pytest.mark.parametrize(
    ("text", "expected"), [("1,2", [1, 2]), (" 11434 , 8080 ,", [11434, 8080])]
)
def test_env_probe_ports_list(text: str, expected: list[int]) -> None:
    cfg = parse(env={"NEXUS_PROBE_PORTS": text})
    assert cfg.discovery.probe_ports == expected


def test_env_probe_ports_with_garbage_is_ignored_with_a_warning() -> None:
    cfg, warnings, _ = parse_config({}, env={"NEXUS_PROBE_PORTS": "1,x"})
    assert cfg.discovery.probe_ports == DEFAULT_PROBE_PORTS
    assert any("NEXUS_PROBE_PORTS" in w for w in warnings)


def test_env_enums_are_case_insensitive() -> None:
    cfg = parse(
        env={
            "NEXUS_LOG_FORMAT": "JSON",
            "NEXUS_ROUTING_STRATEGY": "Least_Busy",
            "NEXUS_ROUTING_MAX_RETRIES": "5",
            "NEXUS_HEALTH_CHECK": "no",
            "NEXUS_PROBE_HOST": "127.0.0.2",
        }
    )
    assert cfg.logging.format is LogFormat.JSON
    assert cfg.routing.strategy is RoutingStrategy.LEAST_BUSY
    assert cfg.routing.max_retries == 5
    assert cfg.health_check.enabled is False
    assert cfg.discovery.probe_host == "127.0.0.2"


def test_env_log_format_garbage_is_ignored_with_a_warning() -> None:
    cfg, warnings, _ = parse_config({}, env={"NEXUS_LOG_FORMAT": "banana"})
    assert cfg.logging.format is LogFormat.PRETTY
    assert any("NEXUS_LOG_FORMAT" in w for w in warnings)


# --- enums and synonyms --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Round_Robin", RoutingStrategy.ROUND_ROBIN),
        ("SMART", RoutingStrategy.SMART),
        (" priority_only ", RoutingStrategy.PRIORITY_ONLY),
        ("random", RoutingStrategy.RANDOM),
    ],
)
def test_strategy_is_case_insensitive(text: str, expected: RoutingStrategy) -> None:
    assert parse({"routing": {"strategy": text}}).routing.strategy is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("open", PrivacyZone.PUBLIC),
        ("OPEN", PrivacyZone.PUBLIC),
        ("public", PrivacyZone.PUBLIC),
        ("Local", PrivacyZone.LOCAL),
        ("restricted", PrivacyZone.RESTRICTED),
    ],
)
def test_zone_values_and_open_synonym(text: str, expected: PrivacyZone) -> None:
    cfg = parse({"backends": [backend(zone=text)]})
    assert cfg.backends[0].zone is expected


def test_backend_type_is_case_insensitive_and_defaults_apply() -> None:
    b = parse({"backends": [backend(type="LlamaCpp")]}).backends[0]
    assert b.type is BackendType.LLAMACPP
    assert b.priority == 50
    assert b.zone is None and b.tier is None and b.max_concurrent is None
    assert b.enabled is True and b.forward_client_auth is False


# --- invalid values: key, value and what is allowed -----------------------------------------

INVALID = [
    pytest.param(
        {"routing": {"strategy": "fastest"}},
        ["routing.strategy", "'fastest'", "smart", "round_robin", "least_busy"],
        id="bad-enum",
    ),
    pytest.param(
        {"server": {"port": "eighty"}},
        ["server.port", "'eighty'", "whole number"],
        id="bad-type",
    ),
    pytest.param({"server": {"port": True}}, ["server.port", "True", "whole number"], id="bool"),
    pytest.param({"server": {"port": 70000}}, ["server.port", "70000", "1-65535"], id="port"),
    pytest.param({"server": 5}, ["server", "5", "table"], id="section-not-table"),
    pytest.param(
        {"backends": [backend(type="ollamax")]},
        ["backends[0].type", "'ollamax'", "ollama", "vllm", "llamacpp"],
        id="unknown-backend-type",
    ),
    pytest.param(
        {"backends": [backend(type="anthropic")]},
        ["backends[0].api_key_env", "'anthropic'", "environment variable"],
        id="cloud-type-needs-a-key-env",
    ),
    pytest.param(
        {"backends": [backend(type="google", api_key_env="K", forward_client_auth=True)]},
        ["backends[0].forward_client_auth", "'google'", "never a client's credentials"],
        id="cloud-never-forwards-client-auth",
    ),
    pytest.param(
        {"pricing": {"gpt-4o": {"input": -1, "output": 2}}},
        ['pricing."gpt-4o".input', "-1", "negative"],
        id="negative-price",
    ),
    pytest.param(
        {"health_check": {"cloud_interval_seconds": 0}},
        ["health_check.cloud_interval_seconds", "greater than 0"],
        id="cloud-interval",
    ),
    pytest.param(
        {"backends": [backend(url="localhost:11434")]},
        ["backends[0].url", "'localhost:11434'", "http://", "https://"],
        id="url-without-scheme",
    ),
    pytest.param(
        {"backends": [backend(url="ftp://host")]},
        ["backends[0].url", "ftp://host", "http://"],
        id="url-bad-scheme",
    ),
    pytest.param(
        {"backends": [backend(name="GPU box"), backend(name="gpu-box")]},
        ["backends[1].name", "'gpu-box'", "'GPU box'", "unique"],
        id="duplicate-names",
    ),
    pytest.param({"backends": [backend(tier=7)]}, ["backends[0].tier", "7", "1-5"], id="tier"),
    pytest.param(
        {"backends": [backend(max_concurrent=0)]},
        ["backends[0].max_concurrent", "0", "at least 1"],
        id="max-concurrent",
    ),
    pytest.param(
        {"backends": [{"url": "http://h", "type": "ollama"}]},
        ["backends[0].name", "required"],
        id="missing-name",
    ),
    pytest.param(
        {"backends": [backend(name="  ")]},
        ["backends[0].name", "empty"],
        id="blank-name",
    ),
    pytest.param(
        {"backends": [backend(type="openai", url="https://api.openai.com")]},
        ["backends[0].api_key_env", "openai"],
        id="openai-needs-key-env",
    ),
    pytest.param(
        {"routing": {"weights": {"load": -5}}},
        ["routing.weights", "negative"],
        id="negative-weight",
    ),
    pytest.param(
        {"routing": {"max_retries": 11}},
        ["routing.max_retries", "11", "between 0 and 10"],
        id="max-retries",
    ),
    pytest.param(
        {"routing": {"aliases": {"a": "b", "b": "a"}}},
        ["routing.aliases", "circular", "'a' → 'b' → 'a'"],
        id="alias-cycle",
    ),
    pytest.param(
        {"routing": {"fallbacks": {"m": ["other", "m"]}}},
        ['routing.fallbacks."m"', "itself"],
        id="fallback-to-itself",
    ),
    pytest.param(
        {"routing": {"fallbacks": {"m": "other"}}},
        ['routing.fallbacks."m"', "a list", "'other'"],
        id="fallback-not-a-list",
    ),
    pytest.param(
        {"health_check": {"failure_threshold": 0}},
        ["health_check.failure_threshold", "0", "at least 1"],
        id="threshold",
    ),
    pytest.param(
        {"discovery": {"allowed_networks": ["10.0.0.0/8", "not-a-net"]}},
        ["discovery.allowed_networks[1]", "'not-a-net'", "CIDR"],
        id="network",
    ),
    pytest.param(
        {"discovery": {"probe_ports": [11434, 0]}},
        ["discovery.probe_ports[1]", "0", "1-65535"],
        id="probe-port",
    ),
    pytest.param(
        {"logging": {"component_levels": {"routing": "loud"}}},
        ['logging.component_levels."routing"', "'loud'", "debug", "info"],
        id="component-level",
    ),
]


@pytest.mark.parametrize(("data", "fragments"), INVALID)
def test_invalid_values_name_key_value_and_allowed(
    data: dict[str, Any], fragments: list[str]
) -> None:
    found = problems(data, env={})
    assert len(found) == 1, found
    for fragment in fragments:
        assert fragment in found[0], (fragment, found[0])


def test_config_error_message_lists_every_problem_and_the_path(tmp_path: Path) -> None:
    err = ConfigError(["a: bad", "b: worse"], tmp_path / "n.toml")
    text = str(err)
    assert str(tmp_path / "n.toml") in text
    assert "  - a: bad" in text and "  - b: worse" in text


def test_several_type_errors_are_all_reported_at_once() -> None:
    found = problems(
        {
            "server": {"port": "eighty", "host": 5},
            "routing": {"strategy": "fastest"},
            "backends": [backend(type="ollamax")],
        }
    )
    assert len(found) == 4
    joined = "\n".join(found)
    for key in ("server.port", "server.host", "routing.strategy", "backends[0].type"):
        assert key in joined


def test_several_semantic_errors_are_all_reported_at_once() -> None:
    found = problems(
        {
            "server": {"port": 70000},
            "routing": {"aliases": {"x": "x"}, "fallbacks": {"m": ["m"]}},
            "backends": [
                backend(tier=7),
                backend(url="nope"),
                backend(type="anthropic", name="claude"),
            ],
        }
    )
    joined = "\n".join(found)
    for key in (
        "server.port",
        "routing.aliases",
        'routing.fallbacks."m"',
        "backends[0].tier",
        "backends[1].url",
        "backends[1].name",  # same name as backends[0]
        "backends[2].api_key_env",
    ):
        assert key in joined, key


def test_type_and_semantic_errors_are_reported_together() -> None:
    found = problems({"server": {"port": "eighty"}, "backends": [backend(tier=7)]})
    joined = "\n".join(found)
    assert "server.port" in joined
    assert "backends[0].tier" in joined


def test_negative_weight_message_names_key_and_value() -> None:
    (problem,) = problems({"routing": {"weights": {"load": -5}}})
    assert "routing.weights.load" in problem
    assert "-5" in problem


def test_nonpositive_health_interval_message_names_value() -> None:
    (problem,) = problems({"health_check": {"interval_seconds": -3}})
    assert "health_check.interval_seconds" in problem
    assert "-3" in problem


# --- warnings ------------------------------------------------------------------------------


def test_unknown_key_warns_with_did_you_mean() -> None:
    cfg, warnings, _ = parse_config({"server": {"hots": "x"}})
    assert cfg.server.host == "127.0.0.1"
    assert len(warnings) == 1
    assert "server.hots" in warnings[0]
    assert "did you mean 'host'" in warnings[0]


@pytest.mark.parametrize(
    ("data", "key", "suggestion"),
    [
        ({"routing": {"stratgy": "smart"}}, "routing.stratgy", "strategy"),
        ({"helth_check": {}}, "helth_check", "health_check"),
        ({"backends": [backend(priorty=2)]}, "backends[0].priorty", "priority"),
        (
            {"backends": [backend(models={"m": {"vison": True}})]},
            'backends[0].models."m".vison',
            "vision",
        ),
    ],
)
def test_unknown_keys_everywhere_are_warned(
    data: dict[str, Any], key: str, suggestion: str
) -> None:
    _, warnings, _ = parse_config(data)
    assert len(warnings) == 1
    assert f"'{key}'" in warnings[0]
    assert f"did you mean '{suggestion}'" in warnings[0]


def test_unknown_key_without_close_match_has_no_suggestion() -> None:
    _, warnings, _ = parse_config({"server": {"zzzzzz": 1}})
    assert len(warnings) == 1
    assert "server.zzzzzz" in warnings[0]
    assert "did you mean" not in warnings[0]


def test_weights_not_summing_to_100_warn() -> None:
    cfg, warnings, _ = parse_config({"routing": {"weights": {"priority": 60}}})
    assert (cfg.routing.weights.load, cfg.routing.weights.latency) == (30, 20)
    assert len(warnings) == 1 and "110" in warnings[0]


def test_empty_alias_target_is_dropped_with_a_warning() -> None:
    cfg, warnings, _ = parse_config({"routing": {"aliases": {"a": " ", "b": "c"}}})
    assert cfg.routing.aliases == {"b": "c"}
    assert any('"a"' in w and "empty" in w for w in warnings)


def test_long_alias_chain_is_valid_but_warns() -> None:
    cfg, warnings, _ = parse_config(
        {"routing": {"aliases": {"a": "b", "b": "c", "c": "d", "d": "e"}}}
    )
    assert len(cfg.routing.aliases) == 4
    assert len(warnings) == 1
    assert "'a' resolves to 'd'" in warnings[0]


# --- load_config ---------------------------------------------------------------------------


def test_load_missing_explicit_path_gives_defaults_and_a_warning(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    loaded = load_config(missing, env={})
    assert loaded.file_exists is False
    assert loaded.path == missing
    assert loaded.config.server.port == 8000
    assert len(loaded.warnings) == 1
    assert str(missing) in loaded.warnings[0] and "does not exist" in loaded.warnings[0]


def test_load_toml_syntax_error_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[server\nport = 8000\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert "not valid TOML" in str(info.value)
    assert info.value.path == path


def test_load_invalid_value_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "n.toml"
    path.write_text('[routing]\nstrategy = "fastest"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.path == path
    assert str(path) in str(info.value)


def test_load_file_with_env_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "n.toml"
    path.write_text('[server]\nport = 9000\nhost = "10.0.0.1"\n[logging]\nlevel = "debug"\n')
    loaded = load_config(path, env={"NEXUS_HOST": "10.0.0.2"}, flags={"logging.level": "error"})
    assert loaded.file_exists is True
    cfg = loaded.config
    assert (cfg.server.port, cfg.server.host, cfg.logging.level) == (
        9000,
        "10.0.0.2",
        LogLevel.ERROR,
    )
    assert loaded.source_of("server.port") == "file"
    assert loaded.source_of("server.host") == "env"
    assert loaded.source_of("logging.level") == "flag"
    assert loaded.source_of("server.max_body_bytes") == "default"


def test_load_uses_the_given_env_not_the_process_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXUS_PORT", "4242")
    loaded = load_config(tmp_path / "absent.toml", env={})
    assert loaded.config.server.port == 8000


def test_load_unreadable_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={})  # a directory
    assert "cannot read the file" in str(info.value)


def test_missing_default_file_means_defaults_without_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEXUS_CONFIG", raising=False)
    monkeypatch.setattr(paths, "default_config_file", lambda: tmp_path / "nexus.toml")
    loaded = load_config(None, env={})
    assert loaded.path == tmp_path / "nexus.toml"
    assert loaded.file_exists is False
    assert loaded.warnings == []
    assert loaded.config.server.port == 8000


def test_config_path_explicit_beats_nexus_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXUS_CONFIG", str(tmp_path / "from-env.toml"))
    assert resolve_config_path(tmp_path / "explicit.toml") == (tmp_path / "explicit.toml", True)
    assert resolve_config_path(None) == (tmp_path / "from-env.toml", True)


def test_load_config_reads_nexus_config_from_the_given_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEXUS_CONFIG", raising=False)
    monkeypatch.setattr(paths, "default_config_file", lambda: tmp_path / "default.toml")
    path = tmp_path / "chosen.toml"
    path.write_text("[server]\nport = 9123\n")
    loaded = load_config(None, env={"NEXUS_CONFIG": str(path)})
    assert loaded.path == path
    assert loaded.config.server.port == 9123


# --- normalisation and nested tables -------------------------------------------------------


def test_service_types_get_a_trailing_dot() -> None:
    cfg = parse({"discovery": {"service_types": ["_foo._tcp.local", "_bar._tcp.local."]}})
    assert cfg.discovery.service_types == ["_foo._tcp.local.", "_bar._tcp.local."]


def test_per_model_overrides_parse_into_model_override() -> None:
    cfg = parse(
        {
            "backends": [
                backend(
                    models={
                        "x": {"vision": True},
                        "meta-llama/Llama-3.1-8B": {"tools": True, "context_length": 131072},
                    }
                )
            ]
        }
    )
    models = cfg.backends[0].models
    assert models["x"] == ModelOverride(vision=True)
    assert models["x"].tools is None and models["x"].context_length is None
    assert models["meta-llama/Llama-3.1-8B"] == ModelOverride(context_length=131072, tools=True)


def test_per_model_override_with_bad_type_is_an_error() -> None:
    (problem,) = problems({"backends": [backend(models={"x": {"vision": "yes"}})]})
    assert 'backends[0].models."x".vision' in problem
    assert "true or false" in problem


def test_float_fields_accept_integers() -> None:
    cfg = parse({"server": {"request_timeout_seconds": 10}})
    assert cfg.server.request_timeout_seconds == 10.0
    assert isinstance(cfg.server.request_timeout_seconds, float)


def test_port_zero_is_allowed() -> None:
    assert parse({"server": {"port": 0}}).server.port == 0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("local-ollama", "local-ollama"),
        ("My Backend!", "my-backend"),
        ("  GPU box #2 ", "gpu-box-2"),
        ("a__b", "a-b"),
        ("Café", "caf"),
        ("!!!", "backend"),
        ("", "backend"),
    ],
)
def test_backend_id_is_a_slug(name: str, expected: str) -> None:
    assert backend_id(name) == expected


def test_new_alias_and_fallback_stay_above_the_comment_of_the_next_table() -> None:
    import tomlkit

    from nexusd.config.store import set_alias, set_fallbacks

    text = (
        "[routing.aliases]  # clients ask for the name on the left\n"
        '"gpt-4" = "llama3:70b"\n'
        "\n"
        "# Fallback chains: tried in order\n"
        "[routing.fallbacks]\n"
        '"llama3:70b" = ["qwen2:72b"]\n'
        "\n"
        "# Health checks\n"
        "[health_check]\n"
        "enabled = true\n"
    )
    doc = tomlkit.parse(text)
    set_alias("fast", "llama3:8b")(doc)
    set_fallbacks("fast", ["mistral:7b"])(doc)
    lines = tomlkit.dumps(doc).splitlines()
    assert lines.index('fast = "llama3:8b"') == lines.index('"gpt-4" = "llama3:70b"') + 1
    assert lines.index('fast = ["mistral:7b"]') == lines.index('"llama3:70b" = ["qwen2:72b"]') + 1
    assert lines[lines.index("# Fallback chains: tried in order") + 1] == "[routing.fallbacks]"
    assert lines[lines.index("# Health checks") + 1] == "[health_check]"
