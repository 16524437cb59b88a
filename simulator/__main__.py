"""`python -m simulator --config F --port N --speed S --seed K [--ledger-out FILE]`."""

from simulator.cli import main

main()
