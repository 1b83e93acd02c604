"""A local launch is safe on a shared network: the Ray it starts listens beyond loopback only with token
authentication, even when the user's environment turns authentication off (issue 14, item 8).

The launch is the one shared with test_live.py (tests/watched_launch.py): its Ray was looked at while the
sweep ran, and the sweep then finished."""

from __future__ import annotations

import pytest
from watched_launch import LOOPBACK


@pytest.mark.slow
def test_a_local_launch_listens_beyond_loopback_only_with_a_token(watched_launch):
    seen = watched_launch
    assert seen.listeners is not None, "the launch's Ray did not start listening"
    # the GCS and the raylet run with token authentication although the user's environment said "disabled"
    assert seen.server_auth_modes and all(mode == "token" for mode in seen.server_auth_modes)
    exposed = [(name, ip, port) for name, ip, port in seen.listeners if ip not in LOOPBACK]
    assert exposed  # Ray's servers do listen on every interface: the token is what protects them
    # no open HTTP endpoint (Ray's metrics exporters, on 44217 / 44227 by default, are kept from binding)
    assert not [k for k, v in seen.http_answers.items() if v == "HTTP 200"], seen.http_answers
    assert not [port for _, _, port in seen.listeners if port in (44217, 44227)], seen.listeners
    anonymous = seen.anonymous_status  # `ray status` at the GCS's outside address, without a token
    assert anonymous is not None and anonymous.returncode != 0
    assert "InvalidAuthToken" in anonymous.stdout + anonymous.stderr
    assert seen.running_after_ray_checks, "the sweep ended before the check: lengthen its trials"
    assert seen.returncode == 0, seen.stderr
    assert "2 ok" in seen.stdout
