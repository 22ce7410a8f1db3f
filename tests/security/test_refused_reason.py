"""refused_reason(url): a custom model endpoint on an address tenant containers may not reach is
refused at deploy, with the reason; pure (resolver, local addresses and gateways injected)."""
# Private addresses here are only validated or rendered as text, never contacted: the reachability
# tests send packets only to stand-in hosts in network namespaces they create (tests/security).

import pytest

from instances.egress import mock_llm_allow, refused_reason

LOCAL = ["127.0.0.1", "192.0.2.2", "172.17.0.1", "172.18.0.1", "203.0.114.7"]
GATEWAYS = {"gateway": ["172.18.0.1"], "host-gateway": ["172.17.0.1"]}


def reason(url, allow=(), names=None, **kwargs):
    names = names or {}
    return refused_reason(
        url,
        allow=list(allow),
        resolve=lambda host: names.get(host, []),
        local_addresses=kwargs.pop("local", LOCAL),
        gateways=kwargs.pop("gateways", GATEWAYS),
        **kwargs,
    )


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://10.0.0.1:1/v1", "10.0.0.1, a private network address"),
        ("http://172.20.3.4/v1", "a private network address"),
        ("https://192.168.1.10/v1", "a private network address"),
        ("http://100.64.1.1/v1", "carrier-grade NAT"),
        ("http://169.254.169.254/latest/meta-data", "the cloud metadata service"),
        ("http://169.254.10.10/v1", "a link-local address"),
        ("http://127.0.0.1:18789/v1", "a loopback address"),
        ("http://0.0.0.0:80/v1", "a reserved address"),
        ("http://224.0.0.1/v1", "a multicast address"),
        ("http://[::1]:8080/v1", "a loopback address"),
        ("http://[fd00::5]/v1", "a private network address"),
        ("http://[fe80::1]/v1", "a link-local address"),
        ("http://[::ffff:10.1.2.3]/v1", "a private network address"),
        ("http://[fd00:ec2::254]/", "the cloud metadata service"),
    ],
)
def test_refused_ranges_are_a_reason(url, words):
    text = reason(url)
    assert text is not None and words in text


def test_the_engine_hosts_own_public_address_is_refused():
    assert "the engine host" in reason("http://203.0.114.7:8000/v1")


def test_host_docker_internal_and_localhost_are_refused():
    assert "the engine host" in reason("http://host.docker.internal:18900/v1")
    assert "the container itself" in reason("http://localhost:11434/v1")
    assert "the container itself" in reason("http://api.localhost/v1")


def test_a_public_address_or_name_passes():
    assert (
        reason("https://api.openai.com/v1", names={"api.openai.com": ["162.159.140.245"]}) is None
    )
    assert reason("https://8.8.8.8/v1") is None
    assert reason("https://[2606:4700::6810:85e5]/v1") is None


def test_a_name_is_refused_when_any_address_it_resolves_to_is_refused():
    names = {"llm.example.com": ["93.184.216.34", "10.9.8.7"]}
    text = reason("https://llm.example.com/v1", names=names)
    assert text is not None and "llm.example.com resolves to 10.9.8.7" in text


def test_a_name_that_does_not_resolve_here_is_left_to_the_firewall():
    assert reason("https://nowhere.invalid/v1") is None


def test_an_allowed_private_endpoint_passes_on_its_port_only():
    allow = ["10.1.2.0/24:8000", "llm.corp:443"]
    assert reason("http://10.1.2.3:8000/v1", allow) is None
    assert reason("http://10.1.2.3:8001/v1", allow) is not None
    names = {"llm.corp": ["10.50.0.4"]}
    assert reason("https://llm.corp/v1", allow, names=names) is None
    assert reason("http://llm.corp/v1", allow, names=names) is not None  # port 80


def test_the_mock_llm_is_allowed_by_the_gateway_keywords():
    allow = mock_llm_allow(18900)
    assert reason("http://host.docker.internal:18900/v1", allow) is None
    assert reason("http://172.18.0.1:18900/v1", allow) is None
    assert reason("http://172.17.0.1:18900/v1", allow) is None
    assert reason("http://172.18.0.1:18901/v1", allow) is not None
    assert reason("http://host.docker.internal:5432/v1", allow) is not None
    # The keyword is the gateway's address only, not every host address.
    assert reason("http://192.0.2.2:18900/v1", allow) is not None


def test_gateways_are_asked_only_when_an_entry_needs_them():
    calls = []

    def gateways():
        calls.append(1)
        return GATEWAYS

    assert reason("http://10.0.0.1/v1", ["8.8.8.8:53"], gateways=gateways) is not None
    assert calls == []
    assert reason("http://172.18.0.1:18900/v1", ["gateway:18900"], gateways=gateways) is None
    assert calls == [1]


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://example.com/v1", "http:// or https://"),
        ("http:///v1", "no host name"),
        ("http://example.com:99999/v1", "not a valid URL"),
    ],
)
def test_urls_that_are_not_http_endpoints_are_refused(url, words):
    assert words in reason(url)


def test_default_allow_comes_from_the_setting(settings):
    settings.FLEET_EGRESS_ALLOW = ["10.1.2.3:8000"]
    kwargs = {"resolve": lambda h: [], "local_addresses": [], "gateways": GATEWAYS}
    assert refused_reason("http://10.1.2.3:8000/v1", **kwargs) is None
    settings.FLEET_EGRESS_ALLOW = []
    assert refused_reason("http://10.1.2.3:8000/v1", **kwargs) is not None
