/*
 * The virtio PCI transport, modern (virtio 1.x §4.1) only: vendor 1AF4,
 * device 1040 + id, capabilities for the common, notify, ISR, device and
 * PCI-config-access windows in BAR 0, MSI-X table and PBA in BAR 1.
 * It implements hw/virtio/virtio.h; device models never include this
 * header (scripts/check-layering.sh enforces it).
 *
 * Notifications: each queue's notify address is an ioeventfd whose eventfd
 * is read on the VM's I/O thread; interrupts leave through MSI-X irqfds (or
 * INTx plus the ISR byte when MSI-X is off).
 */
#pragma once

/* BAR 0 layout */
#define VP_COMMON_OFF 0x0000
#define VP_COMMON_LEN 0x0040
#define VP_ISR_OFF 0x1000
#define VP_ISR_LEN 0x0004
#define VP_DEVICE_OFF 0x2000
#define VP_DEVICE_LEN 0x1000
#define VP_NOTIFY_OFF 0x3000
#define VP_NOTIFY_LEN 0x1000
#define VP_NOTIFY_MULT 4
#define VP_BAR0_SIZE 0x4000
#define VP_MSIX_BAR 1

/* virtio_pci_cap cfg_type */
#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define VIRTIO_PCI_CAP_ISR_CFG 3
#define VIRTIO_PCI_CAP_DEVICE_CFG 4
#define VIRTIO_PCI_CAP_PCI_CFG 5

/* common configuration offsets */
#define CC_DFSELECT 0x00
#define CC_DF 0x04
#define CC_GFSELECT 0x08
#define CC_GF 0x0c
#define CC_MSIX_CONFIG 0x10
#define CC_NUM_QUEUES 0x12
#define CC_STATUS 0x14
#define CC_CFG_GENERATION 0x15
#define CC_Q_SELECT 0x16
#define CC_Q_SIZE 0x18
#define CC_Q_MSIX 0x1a
#define CC_Q_ENABLE 0x1c
#define CC_Q_NOFF 0x1e
#define CC_Q_DESC 0x20
#define CC_Q_AVAIL 0x28
#define CC_Q_USED 0x30
