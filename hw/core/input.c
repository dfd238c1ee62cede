/*
 * Input events for the VM's input devices, as QEMU's send-key and
 * input-send-event deliver them: the QKeyCode table (QEMU 7.2's 150 key
 * names with their USB HID usages and XT set-1 scancodes, the "number"
 * form of send-key), and the list of input devices a VM has, which
 * vm_input_send() routes events to; and the x-query-usb hook.
 *
 * Threads: registration happens at realize/unrealize and vm_input_send()
 * on the control thread, so the list needs no lock; handlers queue and
 * return without blocking.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "hw/core/vm-int.h"
#include "hw/device.h"

struct qcode {
	const char *name;
	uint8_t hid; /* keyboard/keypad page usage, 0 if the key has none */
	uint8_t xt;  /* set-1 scancode, 0x80 | code for E0-prefixed keys; 0 if none */
};

static const struct qcode qcodes[] = {
	{"unmapped", 0x00, 0x00},
	{"shift", 0xe1, 0x2a},
	{"shift_r", 0xe5, 0x36},
	{"alt", 0xe2, 0x38},
	{"alt_r", 0xe6, 0xb8},
	{"ctrl", 0xe0, 0x1d},
	{"ctrl_r", 0xe4, 0x9d},
	{"menu", 0x65, 0xdd},
	{"esc", 0x29, 0x01},
	{"1", 0x1e, 0x02},
	{"2", 0x1f, 0x03},
	{"3", 0x20, 0x04},
	{"4", 0x21, 0x05},
	{"5", 0x22, 0x06},
	{"6", 0x23, 0x07},
	{"7", 0x24, 0x08},
	{"8", 0x25, 0x09},
	{"9", 0x26, 0x0a},
	{"0", 0x27, 0x0b},
	{"minus", 0x2d, 0x0c},
	{"equal", 0x2e, 0x0d},
	{"backspace", 0x2a, 0x0e},
	{"tab", 0x2b, 0x0f},
	{"q", 0x14, 0x10},
	{"w", 0x1a, 0x11},
	{"e", 0x08, 0x12},
	{"r", 0x15, 0x13},
	{"t", 0x17, 0x14},
	{"y", 0x1c, 0x15},
	{"u", 0x18, 0x16},
	{"i", 0x0c, 0x17},
	{"o", 0x12, 0x18},
	{"p", 0x13, 0x19},
	{"bracket_left", 0x2f, 0x1a},
	{"bracket_right", 0x30, 0x1b},
	{"ret", 0x28, 0x1c},
	{"a", 0x04, 0x1e},
	{"s", 0x16, 0x1f},
	{"d", 0x07, 0x20},
	{"f", 0x09, 0x21},
	{"g", 0x0a, 0x22},
	{"h", 0x0b, 0x23},
	{"j", 0x0d, 0x24},
	{"k", 0x0e, 0x25},
	{"l", 0x0f, 0x26},
	{"semicolon", 0x33, 0x27},
	{"apostrophe", 0x34, 0x28},
	{"grave_accent", 0x35, 0x29},
	{"backslash", 0x31, 0x2b},
	{"z", 0x1d, 0x2c},
	{"x", 0x1b, 0x2d},
	{"c", 0x06, 0x2e},
	{"v", 0x19, 0x2f},
	{"b", 0x05, 0x30},
	{"n", 0x11, 0x31},
	{"m", 0x10, 0x32},
	{"comma", 0x36, 0x33},
	{"dot", 0x37, 0x34},
	{"slash", 0x38, 0x35},
	{"asterisk", 0x55, 0x00},
	{"spc", 0x2c, 0x39},
	{"caps_lock", 0x39, 0x3a},
	{"f1", 0x3a, 0x3b},
	{"f2", 0x3b, 0x3c},
	{"f3", 0x3c, 0x3d},
	{"f4", 0x3d, 0x3e},
	{"f5", 0x3e, 0x3f},
	{"f6", 0x3f, 0x40},
	{"f7", 0x40, 0x41},
	{"f8", 0x41, 0x42},
	{"f9", 0x42, 0x43},
	{"f10", 0x43, 0x44},
	{"num_lock", 0x53, 0x45},
	{"scroll_lock", 0x47, 0x46},
	{"kp_divide", 0x54, 0xb5},
	{"kp_multiply", 0x55, 0x37},
	{"kp_subtract", 0x56, 0x4a},
	{"kp_add", 0x57, 0x4e},
	{"kp_enter", 0x58, 0x9c},
	{"kp_decimal", 0x63, 0x53},
	{"sysrq", 0x46, 0x54},
	{"kp_0", 0x62, 0x52},
	{"kp_1", 0x59, 0x4f},
	{"kp_2", 0x5a, 0x50},
	{"kp_3", 0x5b, 0x51},
	{"kp_4", 0x5c, 0x4b},
	{"kp_5", 0x5d, 0x4c},
	{"kp_6", 0x5e, 0x4d},
	{"kp_7", 0x5f, 0x47},
	{"kp_8", 0x60, 0x48},
	{"kp_9", 0x61, 0x49},
	{"less", 0x64, 0x56},
	{"f11", 0x44, 0x57},
	{"f12", 0x45, 0x58},
	{"print", 0x46, 0xb7},
	{"home", 0x4a, 0xc7},
	{"pgup", 0x4b, 0xc9},
	{"pgdn", 0x4e, 0xd1},
	{"end", 0x4d, 0xcf},
	{"left", 0x50, 0xcb},
	{"up", 0x52, 0xc8},
	{"down", 0x51, 0xd0},
	{"right", 0x4f, 0xcd},
	{"insert", 0x49, 0xd2},
	{"delete", 0x4c, 0xd3},
	{"stop", 0x78, 0x00},
	{"again", 0x79, 0x00},
	{"props", 0x76, 0x00},
	{"undo", 0x7a, 0x00},
	{"front", 0x77, 0x00},
	{"copy", 0x7c, 0x00},
	{"open", 0x74, 0x00},
	{"paste", 0x7d, 0x00},
	{"find", 0x7e, 0x00},
	{"cut", 0x7b, 0x00},
	{"lf", 0x00, 0x00},
	{"help", 0x75, 0x00},
	{"meta_l", 0xe3, 0xdb},
	{"meta_r", 0xe7, 0xdc},
	{"compose", 0x65, 0x00},
	{"pause", 0x48, 0xc6},
	{"ro", 0x87, 0x00},
	{"hiragana", 0x93, 0x00},
	{"henkan", 0x8a, 0x00},
	{"yen", 0x89, 0x00},
	{"muhenkan", 0x8b, 0x00},
	{"katakanahiragana", 0x88, 0x00},
	{"kp_comma", 0x85, 0x00},
	{"kp_equals", 0x67, 0x00},
	{"power", 0x66, 0x00},
	{"sleep", 0x00, 0x00},
	{"wake", 0x00, 0x00},
	{"audionext", 0x00, 0x00},
	{"audioprev", 0x00, 0x00},
	{"audiostop", 0x00, 0x00},
	{"audioplay", 0x00, 0x00},
	{"audiomute", 0x7f, 0x00},
	{"volumeup", 0x80, 0x00},
	{"volumedown", 0x81, 0x00},
	{"mediaselect", 0x00, 0x00},
	{"mail", 0x00, 0x00},
	{"calculator", 0x00, 0x00},
	{"computer", 0x00, 0x00},
	{"ac_home", 0x00, 0x00},
	{"ac_back", 0x00, 0x00},
	{"ac_forward", 0x00, 0x00},
	{"ac_refresh", 0x00, 0x00},
	{"ac_bookmarks", 0x00, 0x00},
	{"lang1", 0x90, 0x00},
	{"lang2", 0x91, 0x00},
};

int vm_input_qcode(const char *name)
{
	for (unsigned i = 0; i < ARRAY_SIZE(qcodes); i++) {
		if (strcmp(qcodes[i].name, name) == 0) {
			return (int)i;
		}
	}
	return -1;
}

int vm_input_qcode_from_number(int64_t number)
{
	if (number <= 0 || number > 0xff) {
		return 0; /* "unmapped", as QEMU treats an unknown number */
	}
	for (unsigned i = 1; i < ARRAY_SIZE(qcodes); i++) {
		if (qcodes[i].xt == number) {
			return (int)i;
		}
	}
	return 0;
}

unsigned vm_input_qcode_hid(int q)
{
	return q >= 0 && (unsigned)q < ARRAY_SIZE(qcodes) ? qcodes[q].hid : 0;
}

int vm_input_register(struct vm *vm, const char *id, unsigned kinds, vm_input_fn *fn, void *opaque)
{
	struct vm_input *in;

	if (vm->n_inputs >= VM_MAX_INPUTS) {
		return -ENOSPC;
	}
	in = &vm->inputs[vm->n_inputs++];
	snprintf(in->id, sizeof(in->id), "%s", id);
	in->kinds = kinds;
	in->fn = fn;
	in->opaque = opaque;
	return 0;
}

void vm_input_unregister(struct vm *vm, void *opaque)
{
	for (unsigned i = 0; i < vm->n_inputs; i++) {
		if (vm->inputs[i].opaque == opaque) {
			memmove(&vm->inputs[i], &vm->inputs[i + 1],
				(vm->n_inputs - i - 1) * sizeof(vm->inputs[0]));
			vm->n_inputs--;
			i--;
		}
	}
}

static bool is_other_device(struct vm *vm, const char *id)
{
	for (unsigned i = 0; i < vm->cfg->n_disks; i++) {
		if (strcmp(vm->cfg->disks[i].id, id) == 0) {
			return true;
		}
	}
	for (unsigned i = 0; i < vm->cfg->n_nics; i++) {
		if (strcmp(vm->cfg->nics[i].id, id) == 0) {
			return true;
		}
	}
	return false;
}

/* Deliver the events of @kinds to @in, in order. */
static void deliver(struct vm_input *in, unsigned kinds, const struct vm_input_event *ev,
		    unsigned n)
{
	struct vm_input_event batch[VM_INPUT_MAX_EVENTS];
	unsigned k = 0;

	for (unsigned i = 0; i < n; i++) {
		if (kinds & (1u << ev[i].type)) {
			batch[k++] = ev[i];
		}
	}
	if (k) {
		in->fn(in->opaque, batch, k);
	}
}

int vm_input_send(struct vm *vm, const char *device, const struct vm_input_event *ev, unsigned n,
		  struct error **errp)
{
	const unsigned key = 1u << VM_INPUT_KEY;
	const unsigned ptr = 1u << VM_INPUT_BTN | 1u << VM_INPUT_REL | 1u << VM_INPUT_ABS;
	struct vm_input *kbd = NULL, *mouse = NULL;

	static const char *const kind_names[] = {"key", "btn", "rel", "abs"};
	unsigned wanted = 0;

	if (n > VM_INPUT_MAX_EVENTS) {
		return error_set(errp, E2BIG, "at most %d input events at once",
				 VM_INPUT_MAX_EVENTS);
	}
	for (unsigned i = 0; i < n; i++) {
		if ((unsigned)ev[i].type > VM_INPUT_ABS) {
			return error_set(errp, EINVAL, "bad input event type %d", ev[i].type);
		}
		wanted |= 1u << ev[i].type;
	}
	if (device) {
		for (unsigned i = 0; i < vm->n_inputs; i++) {
			struct vm_input *in = &vm->inputs[i];

			if (strcmp(in->id, device) != 0) {
				continue;
			}
			for (unsigned t = 0; t <= VM_INPUT_ABS; t++) {
				if ((wanted & ~in->kinds) & (1u << t)) {
					return error_set(
						errp, ENODEV,
						"Input handler not found for event type %s",
						kind_names[t]);
				}
			}
			deliver(in, in->kinds, ev, n);
			return 0;
		}
		if (is_other_device(vm, device)) {
			return error_set(errp, EINVAL, "Device '%s' is not an input device",
					 device);
		}
		return error_set_class(errp, ERROR_CLASS_DEVICE_NOT_FOUND, ENOENT,
				       "Device '%s' not found", device);
	}
	/* QEMU sends keys to the active keyboard, the rest to the active pointer: the first */
	for (unsigned i = 0; i < vm->n_inputs; i++) {
		if (!kbd && (vm->inputs[i].kinds & key)) {
			kbd = &vm->inputs[i];
		}
		if (!mouse && (vm->inputs[i].kinds & ptr)) {
			mouse = &vm->inputs[i];
		}
	}
	for (unsigned t = 0; t <= VM_INPUT_ABS; t++) {
		if ((wanted & (1u << t)) && !(((1u << t) & key) ? (void *)kbd : (void *)mouse)) {
			return error_set(errp, ENODEV, "Input handler not found for event type %s",
					 kind_names[t]);
		}
	}
	if (kbd) {
		deliver(kbd, key, ev, n);
	}
	if (mouse) {
		deliver(mouse, ptr, ev, n);
	}
	return 0;
}

void vm_set_usb_info_handler(struct vm *vm, char *(*fn)(void *opaque), void *opaque)
{
	vm->usb_info = fn;
	vm->usb_info_opaque = opaque;
}

int vm_query_usb(struct vm *vm, char **ret, struct error **errp)
{
	if (!vm->usb_info) {
		return error_set(errp, ENODEV, "USB support not enabled");
	}
	*ret = vm->usb_info(vm->usb_info_opaque);
	return *ret ? 0 : error_set(errp, ENOMEM, "out of memory");
}
