package rpc

import (
	"context"
	"strconv"
	"testing"

	"github.com/snodebox/snodebox/storage/rpcclient"
)

// The RPC layer's own cost per request (parse, auth, hash, node signature,
// JSON answer) over the in-memory store, next to the bare Ed25519 work a
// signed store needs (one verify + one sign), which bounds it from below.
//
//	go test ./storage/rpc/ -run '^$' -bench . -benchtime 2000x
func BenchmarkStoreUnsigned(b *testing.B) {
	n := newTestNode(b, 1)
	u := sessionSigner(b, 7)
	bodies := make([][]byte, b.N)
	for i := range bodies {
		bodies[i] = rpcclient.Body("store", rpcclient.StoreUnsigned(u.Pubkey(), rpcclient.StoreArgs{Data: []byte("message " + strconv.Itoa(i)), Timestamp: testNow, TTL: day}))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if status, out, _ := n.srv.Invoke(context.Background(), bodies[i]); status != 200 {
			b.Fatalf("%d %s", status, out)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "stores/s")
}

func BenchmarkStoreSigned(b *testing.B) {
	n := newTestNode(b, 1)
	u := sessionSigner(b, 7)
	bodies := make([][]byte, b.N)
	for i := range bodies {
		bodies[i] = rpcclient.Body("store", u.Store(rpcclient.StoreArgs{Namespace: 3, Data: []byte("message " + strconv.Itoa(i)), Timestamp: testNow, TTL: day}))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if status, out, _ := n.srv.Invoke(context.Background(), bodies[i]); status != 200 {
			b.Fatalf("%d %s", status, out)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "stores/s")
}

// BenchmarkCryptoFloor is the Ed25519 work of one signed store: the request
// check (ed25519→x25519 conversion + verify) and the node's answer
// signature. BenchmarkStoreSigned's ns/op over this one's is the RPC
// layer's overhead factor.
func BenchmarkCryptoFloor(b *testing.B) {
	n := newTestNode(b, 1)
	u := sessionSigner(b, 7)
	msg := []byte("store3" + strconv.FormatInt(testNow, 10))
	a := &auth{account: u.Account, sig: u.Sign(msg), edPub: []byte(edPub(seed32(7)))}
	for i := 0; i < b.N; i++ {
		if !n.srv.verify(context.Background(), a, 0, false, msg) {
			b.Fatal("signature does not verify")
		}
		n.srv.sign(msg)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verify+sign/s")
}

func BenchmarkRetrieve(b *testing.B) {
	n := newTestNode(b, 1)
	u := sessionSigner(b, 7)
	for i := 0; i < 100; i++ {
		n.srv.Invoke(context.Background(), rpcclient.Body("store", rpcclient.StoreUnsigned(u.Pubkey(), rpcclient.StoreArgs{Data: make([]byte, 200+i), Timestamp: testNow, TTL: day})))
	}
	body := rpcclient.Body("retrieve", u.Retrieve(rpcclient.RetrieveArgs{Timestamp: testNow, MaxCount: 20}))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if status, out, _ := n.srv.Invoke(context.Background(), body); status != 200 {
			b.Fatalf("%d %s", status, out)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "retrieves/s")
}
