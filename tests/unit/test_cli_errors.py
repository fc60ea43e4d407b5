"""The command line fails in one line with a non-zero exit on a bad inventory or input."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "bicycle.py"), *args],
                          capture_output=True, text=True, timeout=60)


def test_bad_inventory_names_field_and_line(tmp_path):
    inv = tmp_path / "inventory.yml"
    inv.write_text("nodes:\n  - name: node1\n    host: 127.0.0.11\n    port: seventy\n")
    r = cli("-i", str(inv), "status")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "nodes[0].port" in lines[0] and "line 4" in lines[0]


def test_missing_inventory_is_one_line(tmp_path):
    r = cli("-i", str(tmp_path / "nope.yml"), "status")
    assert r.returncode == 1 and "not found" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_bad_env_pair_is_refused_before_any_call():
    r = cli("--api", "127.0.0.1:1", "service", "create", "web", "--image", "x", "--env", "NOEQUALS")
    assert r.returncode == 1 and "KEY=VALUE" in r.stderr
