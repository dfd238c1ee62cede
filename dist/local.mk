# dist/: systemd units, tmpfiles entries, an example settings file and bash
# completion for vmctl, vmm-img and vmmd.
systemdunitdir = $(prefix)/lib/systemd/system
dist_systemdunit_DATA = dist/vmmd.service dist/vmmd.socket dist/vmmd-vm@.service
tmpfilesdir = $(prefix)/lib/tmpfiles.d
dist_tmpfiles_DATA = dist/tmpfiles.d/vmmd.conf
bashcompletiondir = $(datadir)/bash-completion/completions
dist_bashcompletion_DATA = dist/bash-completion/vmctl dist/bash-completion/vmm-img \
	dist/bash-completion/vmmd
vmmdexamplesdir = $(docdir)/examples
dist_vmmdexamples_DATA = dist/vmmd.conf.example

TESTS += tests/functional/test-daemon-dist.sh
