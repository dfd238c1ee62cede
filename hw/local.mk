# hw: see the top-level Makefile.am
