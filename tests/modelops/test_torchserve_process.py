"""TorchServe as a process: start, stop, restart, status, token auth and unreachable servers."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from recadmin.modelops.torchserve import (
    TorchServeAuthError,
    TorchServeClient,
    TorchServeConfig,
    TorchServeStartError,
    TorchServeUnavailable,
    config_on_free_ports,
    free_port,
    get_client,
    read_pid,
    render_properties,
    torchserve_start,
    torchserve_status,
    torchserve_stop,
)
from tests.fixtures.torchserve import TorchServeInstance


def test_it_renders_loopback_properties_with_model_api_on_and_token_auth_as_configured(tmp_path: Path) -> None:
    config = config_on_free_ports(tmp_path / "run", tmp_path / "store")
    props = dict(line.split("=", 1) for line in render_properties(config).splitlines() if "=" in line)
    assert props["inference_address"] == config.inference_url
    assert props["management_address"].startswith("http://127.0.0.1:")
    assert props["enable_model_api"] == "true"
    assert props["disable_token_authorization"] == "false"
    assert props["model_store"] == str((tmp_path / "store").resolve())
    off = TorchServeConfig(token_auth=False)
    assert "disable_token_authorization=true" in render_properties(off)


def test_an_unreachable_torchserve_fails_fast_with_service_unavailable(tmp_path: Path) -> None:
    config = TorchServeConfig(
        inference_url=f"http://127.0.0.1:{free_port()}",
        management_url=f"http://127.0.0.1:{free_port()}",
        key_file=tmp_path / "key_file.json",
        timeout=1.0,
        retries=2,
        backoff=0.05,
    )
    client = TorchServeClient(config)
    started = time.monotonic()
    with pytest.raises(TorchServeUnavailable) as exc_info:
        client.list_models()
    assert "did not answer" in exc_info.value.message
    assert exc_info.value.status_code == 503
    with pytest.raises(TorchServeUnavailable):
        client.predict_fast("recommender", {"history": []}, budget=0.2)
    assert time.monotonic() - started < 3
    assert client.ping(timeout=0.5) is False


def test_it_starts_fast_and_reports_an_empty_server(torchserve: TorchServeInstance) -> None:
    assert torchserve.starts[0] < 20
    assert torchserve.client.ping()
    status = torchserve_status(torchserve.config)
    assert status.running and status.reachable
    assert status.pid == read_pid(torchserve.config)
    assert status.versions == ()
    assert (torchserve.run_dir / "logs" / "ts_log.log").is_file()


def test_a_second_start_from_the_same_directory_is_refused(torchserve: TorchServeInstance) -> None:
    with pytest.raises(TorchServeStartError, match="already running"):
        torchserve_start(torchserve.config)


def test_calls_to_a_stopped_torchserve_raise_unavailable_and_restart_brings_it_back(
    torchserve: TorchServeInstance,
) -> None:
    torchserve.stop()
    assert read_pid(torchserve.config) is None
    started = time.monotonic()
    with pytest.raises(TorchServeUnavailable):
        torchserve.client.list_models()
    assert time.monotonic() - started < 5
    torchserve.start()
    assert torchserve.client.list_models() == []


def test_the_command_prints_status_and_fails_when_torchserve_is_down(
    torchserve_settings: TorchServeInstance, capsys: pytest.CaptureFixture[str]
) -> None:
    call_command("torchserve", "status")
    assert "up (pid" in capsys.readouterr().out
    torchserve_settings.stop()
    with pytest.raises(CommandError, match="not answering"):
        call_command("torchserve", "status")


@pytest.mark.torchserve
def test_token_auth_keys_are_read_from_the_key_file_and_renewed_when_refused(tmp_path: Path) -> None:
    config = config_on_free_ports(tmp_path / "run", tmp_path / "store", token_auth=True, timeout=5.0)
    handle = torchserve_start(config)
    try:
        key_file = config.key_file
        keys = json.loads(key_file.read_text())
        assert {"management", "inference", "API"} <= set(keys)
        client = TorchServeClient(config)
        assert client.list_models() == []
        assert client.ping()

        # A client that sends no key is refused with a clear error, not a hang or a 500.
        no_auth = TorchServeClient(TorchServeConfig(**{**config.__dict__, "token_auth": False}))
        with pytest.raises(TorchServeAuthError, match="refused our token"):
            no_auth.list_models()

        # A stale management key (as after expiry): the client asks for a new one with the API key.
        keys["management"]["key"] = "stale000"
        key_file.write_text(json.dumps(keys))
        assert client.list_models() == []
        assert json.loads(key_file.read_text())["management"]["key"] != "stale000"
    finally:
        assert torchserve_stop(config, timeout=20) is True
    assert not handle.is_running()
    assert not config.key_file.exists()


def test_get_client_reuses_one_client_per_process_and_config(tmp_path: Path) -> None:
    config = TorchServeConfig(key_file=tmp_path / "key_file.json")
    assert get_client(config) is get_client(config)
    assert get_client(config) is not get_client(TorchServeConfig(key_file=tmp_path / "other.json"))


@pytest.mark.torchserve
def test_the_command_starts_and_stops_a_torchserve_with_token_auth_from_the_settings(
    tmp_path: Path, settings: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_on_free_ports(tmp_path / "var" / "torchserve", tmp_path / "model_store", token_auth=True)
    for name, value in config.as_settings().items():
        setattr(settings, name, value)
    try:
        call_command("torchserve", "start", "--timeout", "60")
        out = capsys.readouterr().out
        assert "TorchServe started (pid" in out and "token auth on" in out
        assert "no models registered" in out
        assert config.key_file.is_file()
        assert TorchServeClient(config).list_models() == []
        call_command("torchserve", "stop")
        assert "stopped" in capsys.readouterr().out
    finally:
        torchserve_stop(config, graceful=False)
    assert read_pid(config) is None
    call_command("torchserve", "stop")
    assert "was not running" in capsys.readouterr().out
