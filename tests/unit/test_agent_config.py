"""AgentConfig from the environment: calico-node's variables, read the way it reads them."""

from __future__ import annotations

import pytest

from agent.config import AgentConfig, ConfigError


def test_ip6_unset_leaves_the_nodes_ipv6_address_alone() -> None:
    cfg = AgentConfig.from_env({"NODENAME": "n1"})
    assert (cfg.ip, cfg.ip_autodetection_method) == ("autodetect", "first-found")
    assert cfg.ip6 is None and cfg.ip6_autodetection_method == "first-found"


def test_ip6_and_its_method_are_read_as_ip_and_its_method_are() -> None:
    cfg = AgentConfig.from_env({"NODENAME": "n1", "IP6": "autodetect",
                                "IP6_AUTODETECTION_METHOD": "interface=eth0"})
    assert (cfg.ip6, cfg.ip6_autodetection_method) == ("autodetect", "interface=eth0")
    assert AgentConfig.from_env({"NODENAME": "n1", "IP6": ""}).ip6 is None


def test_an_unknown_iptables_backend_is_refused_with_the_variable_named() -> None:
    with pytest.raises(ConfigError, match="FELIX_IPTABLESBACKEND"):
        AgentConfig.from_env({"NODENAME": "n1", "FELIX_IPTABLESBACKEND": "ebtables"})
