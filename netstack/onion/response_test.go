package onion

import (
	"bytes"
	"encoding/json"
	"testing"
)

// The sealed {"status","body"} answer is byte for byte what json.Marshal
// wrote before it was built by hand (spec §8.4: the client parses it).
func TestResponseJSONMatchesMarshal(t *testing.T) {
	for _, body := range []string{
		`"plain text"`,
		`{"hash":"abc","swarm":{"aa":{"signature":"AQID"}},"t":1}`,
		`{"messages":[{"data":"<b>&amp;</b>"}],"more":false}`,
		"\"line\u2028para\u2029\"",
		`"\u2028 already escaped \u003c"`,
		`[]`, `null`, `12`,
	} {
		for _, status := range []int{200, 400, 421, 503} {
			want, err := json.Marshal(struct {
				Status int             `json:"status"`
				Body   json.RawMessage `json:"body"`
			}{status, json.RawMessage(body)})
			if err != nil {
				t.Fatal(err)
			}
			if got := responseJSON(status, json.RawMessage(body)); !bytes.Equal(got, want) {
				t.Errorf("responseJSON(%d, %s):\n got %s\nwant %s", status, body, got, want)
			}
		}
	}
}
