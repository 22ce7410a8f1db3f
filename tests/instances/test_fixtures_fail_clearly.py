"""The engine fixtures fail (never skip) with the command that fixes the problem."""

import pytest

from tests.fleet_fixtures import connect_runtime, require_images


def test_a_missing_engine_fails_with_a_clear_message():
    with pytest.raises(pytest.fail.Exception) as exc:
        connect_runtime("unix:///nonexistent/docker.sock")
    message = str(exc.value)
    assert "Docker engine not reachable at unix:///nonexistent/docker.sock" in message
    assert "bash scripts/ensure-docker.sh" in message


@pytest.mark.docker
def test_a_missing_image_fails_with_the_build_command(docker_runtime):
    with pytest.raises(pytest.fail.Exception) as exc:
        require_images(docker_runtime, versions=["1999.0.0"])
    assert "clawfleet/openclaw:1999.0.0 absent" in str(exc.value)
    assert "run images/openclaw/build.sh 1999.0.0" in str(exc.value)
