"""Every help page a newcomer reads: a description, help on every option, the verb's own
defaults, and one thread unless asked."""

import argparse
import subprocess
import sys

import pytest

from cnnlab.cli import build_parser, main
from cnnlab.config import TrainConfig


def pages(parser=None, path=("cnnlab",)):
    parser = parser or build_parser()
    yield " ".join(path), parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from pages(sub, (*path, name))


@pytest.mark.parametrize("path,parser", list(pages()), ids=lambda x: x if isinstance(x, str) else "")
def test_every_help_page_has_a_description_and_help_on_every_option(path, parser):
    assert (parser.description or "").strip(), f"{path}: no description"
    assert "``" not in parser.description, f"{path}: reStructuredText in the description"
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        text = (action.help or "").strip()
        assert text and not text.startswith("(default"), f"{path} {action.option_strings or action.dest}"
        assert "``" not in text, f"{path} {action.option_strings}: reStructuredText"
    assert parser.format_help()  # argparse formats help with %: a bare one in a docstring crashed it


def test_detect_train_shows_its_own_defaults_and_only_the_flags_that_apply(capsys):
    with pytest.raises(SystemExit):
        main(["detect", "train", "--help"])
    page = capsys.readouterr().out
    assert "(default: scenes)" in page and "(default: resnet20)" in page and "(default: 12)" in page
    for flag in ("--adv", "--dp-epsilon", "--groups", "--tta", "--label-noise"):
        assert flag not in page, flag
    assert "--adv" in subprocess.run([sys.executable, "-m", "cnnlab", "train", "--help"],
                                     capture_output=True, text=True).stdout


def test_version_and_one_thread_by_default(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("cnnlab ")
    assert TrainConfig().threads == 1
    tree = build_parser().parse_args(["tree", "somewhere"])
    assert tree.threads == 1
