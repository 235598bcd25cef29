# synctl.bash - bash completion for synctl: command names, then the
# options of the command being typed, then file names.  The commands and
# their options are read from synctl itself (`synctl help` and `synctl help
# COMMAND`, the pages beside each command in tools/synctl/), so this file
# never lists them and cannot drift.  Installed as
# $(PREFIX)/share/bash-completion/completions/synctl; needs only bash.

_synctl() {
  local cur=${COMP_WORDS[COMP_CWORD]} prog=${COMP_WORDS[0]} cmd words
  COMPREPLY=()
  if [ "$COMP_CWORD" -eq 1 ]; then
    words=$("$prog" help 2>/dev/null |
      sed -n 's/^  \([a-z][a-z0-9-]*\)  *[^ ].*$/\1/p')
    if [[ $cur == -* ]]; then words="--help --version"; fi
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
    return 0
  fi
  cmd=${COMP_WORDS[1]}
  if [ "$cmd" = help ] && [ "$COMP_CWORD" -eq 2 ]; then
    words=$("$prog" help 2>/dev/null |
      sed -n 's/^  \([a-z][a-z0-9-]*\)  *[^ ].*$/\1/p')
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
    return 0
  fi
  if [[ $cur == -* ]]; then
    # The options its SYNOPSIS (and OPTIONS, if any) name.
    words=$("$prog" help "$cmd" 2>/dev/null |
      awk '/^[A-Z][A-Z ]*$/ { on = ($0 == "SYNOPSIS" || $0 == "OPTIONS") }
           on' | grep -o -- '--[a-z][a-z0-9-]*' | sort -u)
    COMPREPLY=($(compgen -W "$words --help" -- "$cur"))
    return 0
  fi
  # Anything else (databases, files, addresses): the default, file names.
  return 0
}
complete -o default -o bashdefault -F _synctl synctl
