# dist: see the top-level Makefile.am
