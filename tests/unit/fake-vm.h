/*
 * A fake struct vm for device-class unit tests of hw/pci/ide.c and hw/pci/e1000.c:
 * the hw/device.h getters over a given config, I/O bus and guest RAM, a real
 * PCI host (hw/pci/pci.c) on that bus, and MSI stubs. Single-threaded; links
 * with fake-hw.c (guest memory, I/O bus, IRQ lines).
 */
#pragma once

#include "hw/pci/pci.h"
#include "vmmd/vm.h"

struct iobus;
struct guest_mem;
struct event_base;

struct vm *fake_vm_new(const struct vm_config *cfg, struct iobus *bus, struct guest_mem *mem,
		       struct event_base *base);
void fake_vm_free(struct vm *vm);
