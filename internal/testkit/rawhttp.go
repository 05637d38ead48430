package testkit

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"testing"
)

// RawHTTPServer serves HTTP on loopback by hand, for answers net/http's
// server refuses to produce (HTTP/1.0 with Transfer-Encoding, bodies cut
// short, huge status lines): each connection's first request is read, then
// fn writes what it likes to conn (n counts connections from 1) and the
// connection is closed. It returns "http://ADDR"; the server stops, its
// handlers done, when the test ends.
func RawHTTPServer(t testing.TB, fn func(conn net.Conn, n int)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 1; ; n++ {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				if _, err := http.ReadRequest(bufio.NewReader(conn)); err != nil {
					return
				}
				fn(conn, n)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return "http://" + ln.Addr().String()
}
