# block: see the top-level Makefile.am
