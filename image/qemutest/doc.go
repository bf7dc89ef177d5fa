// Package qemutest boots the real image under QEMU (-M virt and -M raspi3b)
// and checks the appliance end to end from the outside: console markers,
// the storage RPC and status page through forwarded ports, the data disk
// before and after, power-off. Its benchmark reports boot figures.
package qemutest
