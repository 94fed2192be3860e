"""In-process provider simulators (real HTTP/2 + TLS) and a project wired to them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.models import Project
from core.services import project_generate_vapid
from delivery.simulators.server import SimulatorServer

DEAD_APNS = "cd" * 32


@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorServer]:
    server = SimulatorServer(
        cert_dir=tmp_path_factory.mktemp("sim"), invalid_tokens=[DEAD_APNS]
    ).start()
    yield server
    server.stop()


def wire(project: Project, sim: SimulatorServer) -> Project:
    creds, addresses = sim.credentials, sim.addresses
    project.apns_team_id = creds.team_id
    project.apns_key_id = creds.key_id
    project.apns_auth_key = creds.auth_key_pem
    project.apns_topic = creds.topic
    project.apns_endpoint = addresses.apns_endpoint
    project.apns_ca_file = str(creds.ca_file)
    project.fcm_service_account = creds.service_account_info
    project.fcm_endpoint = addresses.fcm_base_url
    project.fcm_ca_file = str(creds.ca_file)
    project.save()
    return project


@pytest.fixture
def project(api, sim) -> Project:
    """The `api` fixture's project, with credentials pointing at the simulators."""
    return wire(api.project, sim)


@pytest.fixture
def clean_sim(sim: SimulatorServer) -> Iterator[None]:
    """The shared simulators with their counts and fault knobs reset, before and after."""
    sim.reset(config=True)
    yield
    sim.reset(config=True)


@pytest.fixture
def web_project(project: Project, sim: SimulatorServer) -> Project:
    """`project` with VAPID keys, trusting the simulators' CA for web push."""
    project, _ = project_generate_vapid(project=project, subject="mailto:ops@example.com")
    project.webpush_ca_file = str(sim.credentials.ca_file)
    project.save(update_fields=["webpush_ca_file"])
    return project
