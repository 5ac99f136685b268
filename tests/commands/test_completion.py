"""`planrunner completion`: the scripts are made from the parser (newcomer finding 43)."""

from __future__ import annotations

from pathlib import Path

from testing import run_process


def test_finding_43_completion_scripts_are_made_from_the_parser(tmp_path: Path) -> None:
    import subprocess

    bash = run_process(["completion", "bash"]).stdout
    script = tmp_path / "c.bash"
    script.write_text(bash)
    probe = subprocess.run(
        ["bash", "-c", f'source {script}; COMP_WORDS=(planrunner apply --conc); COMP_CWORD=2; _planrunner; echo "${{COMPREPLY[@]}}"'],
        capture_output=True, text=True, check=True,
    )
    assert probe.stdout.split() == ["--concurrency"]
    fish = run_process(["completion", "fish"]).stdout
    assert "complete -c planrunner -n '__fish_seen_subcommand_from apply' -l concurrency" in fish
    assert "bashcompinit" in run_process(["completion", "zsh"]).stdout
