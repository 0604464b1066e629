import json

import bgp_check
import pytest

SAMPLE = """\
BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     2026-03-01 10:00:00
kernel4    Kernel     master4    up     2026-03-01 10:00:00
rpki_rtr   RPKI       ---        up     2026-03-01 10:00:02  Established
transit_a_v4 BGP      ---        up     2026-03-01 10:00:05  Established
transit_b_v4 BGP      ---        start  2026-04-02 08:14:11  Active        Socket: Connection refused
rs_ixp_v4  BGP        ---        up     2026-03-01 10:00:09  Established
lab_test   BGP        ---        down   09:30:00      Error: Hold timer expired
"""


def test_parses_every_protocol_line():
    protocols = bgp_check.parse_protocols(SAMPLE)
    assert [p.name for p in protocols] == [
        "device1",
        "kernel4",
        "rpki_rtr",
        "transit_a_v4",
        "transit_b_v4",
        "rs_ixp_v4",
        "lab_test",
    ]


def test_since_with_date_and_short_time():
    protocols = {p.name: p for p in bgp_check.parse_protocols(SAMPLE)}
    assert protocols["transit_b_v4"].since == "2026-04-02 08:14:11"
    assert protocols["lab_test"].since == "09:30:00"


def test_state_and_last_error():
    protocols = {p.name: p for p in bgp_check.parse_protocols(SAMPLE)}
    b = protocols["transit_b_v4"]
    assert b.bgp_state == "Active"
    assert b.last_error == "Socket: Connection refused"
    assert not b.established
    assert protocols["transit_a_v4"].established


def test_down_sessions_only_counts_bgp_and_respects_ignore():
    protocols = bgp_check.parse_protocols(SAMPLE)
    down = bgp_check.down_sessions(protocols, ignore=["lab_*"])
    assert [p.name for p in down] == ["transit_b_v4"]


def test_report_text():
    protocols = bgp_check.parse_protocols(SAMPLE)
    report = bgp_check.format_report(protocols, bgp_check.down_sessions(protocols))
    assert report.splitlines()[0] == "2/4 BGP sessions established"
    assert "DOWN transit_b_v4: start/Active" in report


def test_rejects_text_that_is_not_birdc_output():
    with pytest.raises(ValueError, match="header"):
        bgp_check.parse_protocols("Connection refused\n")


def test_main_json_and_exit_code(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(SAMPLE))
    assert bgp_check.main(["--json", "--ignore", "lab_*"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["down"] == ["transit_b_v4"]
