"""For people working on estrom: the dev stack launcher and the machine check; not shipped."""
