"""The parts of `automator explain`: the trigger occurrence a contact has for a rule
(`occurrences`) and the checks that follow it (`checks`); `automator.explain` puts them
in order and gives the verdict."""
