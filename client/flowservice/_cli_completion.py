"""`flowservice completion bash`: a bash completion function made from the argument parser.

The script is plain bash (`complete -F`), so it needs nothing installed beyond
the command itself and stays in step with the parser: every subcommand, every
option, and the choices of options that have them.
"""

from __future__ import annotations

import argparse
import shlex

_FUNCTION = "_flowservice_complete"


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every parser in the tree by its command path: () is the top level."""
    found = {path: parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(_commands(sub, (*path, name)))
    return found


def _words(parser: argparse.ArgumentParser) -> list[str]:
    words: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            words += list(action.choices)
        words += [option for option in action.option_strings if option.startswith("--")]
    return words


def bash_script(
    parser: argparse.ArgumentParser,
    prog: str = "flowservice",
    grafted: argparse.ArgumentParser | None = None,
) -> str:
    """The completion script: `source <(flowservice completion bash)`.

    `grafted`: another parser whose subcommands replace the same-named ones
    (the server's `serve`, `indexes` and `changefeed`, with their options).
    """
    commands = _commands(parser)
    if grafted is not None:
        commands.update((path, sub) for path, sub in _commands(grafted).items() if path)
    steps = [  # the words so far, then this one: the path to the next parser
        f"      {shlex.quote(' '.join(path[:-1]) + ':' + path[-1])})"
        f" path={shlex.quote(' '.join(path))} ;;"
        for path in commands
        if path
    ]
    cases = [
        f"    {shlex.quote(' '.join(path))}) words={shlex.quote(' '.join(_words(sub)))} ;;"
        for path, sub in commands.items()
    ]
    choices = sorted(
        {
            (option, " ".join(str(choice) for choice in action.choices))
            for sub in commands.values()
            for action in sub._actions
            if action.choices and not isinstance(action, argparse._SubParsersAction)
            for option in action.option_strings
        }
    )
    option_cases = [f"    {option}) words={shlex.quote(words)} ;;" for option, words in choices]
    return "\n".join(
        [
            f"# bash completion for {prog}: source <({prog} completion bash)",
            f"{_FUNCTION}() {{",
            '  local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
            '  local path="" words="" i',
            "  for ((i = 1; i < COMP_CWORD; i++)); do",
            '    case "$path:${COMP_WORDS[i]}" in',
            *steps,
            "    esac",
            "  done",
            '  case "$path" in',
            *cases,
            "  esac",
            '  case "$prev" in',
            *option_cases,
            "  esac",
            '  COMPREPLY=($(compgen -W "$words" -- "$cur"))',
            "}",
            f"complete -o default -F {_FUNCTION} {prog}",
            "",
        ]
    )
