package registry

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// Every field of a get_service_nodes answer can be asked for by its JSON
// name, and asking for one field returns that field alone.
func TestFilterFieldsKeepsExactlyTheNamedField(t *testing.T) {
	swarm, port, lmq, yes := uint64(7), uint16(22021), uint16(22020), true
	full := ServiceNodeState{
		ServiceNodePubkey: "aa", SwarmID: &swarm, StoragePort: &port, StorageLMQPort: &lmq,
		PublicIP: "127.0.0.1", PubkeyX25519: "bb", PubkeyEd25519: "cc", Funded: &yes, Active: &yes,
		StorageServerVersion: []uint16{2, 8, 0},
	}
	typ := reflect.TypeOf(full)
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		got := filterFields(full, map[string]bool{name: true})
		b, err := json.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		var keys map[string]json.RawMessage
		json.Unmarshal(b, &keys)
		if len(keys) != 1 || keys[name] == nil {
			t.Errorf("fields {%s}: answer %s, want that field alone", name, b)
		}
		if !reflect.DeepEqual(reflect.ValueOf(got).Field(i).Interface(), reflect.ValueOf(full).Field(i).Interface()) {
			t.Errorf("fields {%s}: value %v, want %v", name, reflect.ValueOf(got).Field(i), reflect.ValueOf(full).Field(i))
		}
	}
	if got := filterFields(full, nil); !reflect.DeepEqual(got, full) {
		t.Errorf("no fields filter: %+v, want everything", got)
	}
	if got := filterFields(full, map[string]bool{"no_such_field": true, "public_ip": false}); !reflect.DeepEqual(got, ServiceNodeState{}) {
		t.Errorf("unknown or false fields: %+v, want nothing", got)
	}
}
