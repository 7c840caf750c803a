// Command testserver is the tiny workload of the kind cluster e2e test. It
// serves "hello from <hostname>" over HTTP and, until they all pass, retries
// its checks once a second: each -resolve name resolves, each -tcp address
// accepts a connection, and a GET of each -peer (host:port) answers 200. It logs every first success and then
// "CHECKS PASSED", which the test waits for.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	listen := flag.String("listen", ":8080", "HTTP listen address")
	peers := flag.String("peer", "", "comma-separated host:port to GET")
	names := flag.String("resolve", "", "comma-separated names that must resolve")
	dials := flag.String("tcp", "", "comma-separated host:port that must accept a TCP connection")
	flag.Parse()

	host, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", host)
	})
	go func() { log.Fatal(http.ListenAndServe(*listen, nil)) }()

	pending := map[string]func() (string, error){}
	for _, n := range split(*names) {
		pending["resolve "+n] = func() (string, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			addrs, err := net.DefaultResolver.LookupHost(ctx, n)
			return strings.Join(addrs, ","), err
		}
	}
	for _, a := range split(*dials) {
		pending["tcp "+a] = func() (string, error) {
			c, err := net.DialTimeout("tcp", a, 3*time.Second)
			if err != nil {
				return "", err
			}
			defer c.Close()
			return c.RemoteAddr().String(), nil
		}
	}
	client := &http.Client{Timeout: 3 * time.Second}
	for _, p := range split(*peers) {
		pending["get "+p] = func() (string, error) {
			resp, err := client.Get("http://" + p + "/")
			if err != nil {
				return "", err
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				return "", fmt.Errorf("status %s", resp.Status)
			}
			return strings.TrimSpace(string(body)), nil
		}
	}
	for tries := 1; len(pending) > 0; tries++ {
		for name, check := range pending {
			got, err := check()
			if err != nil {
				if tries%10 == 1 {
					log.Printf("WAIT %s: %v", name, err)
				}
				continue
			}
			log.Printf("OK %s: %s", name, got)
			delete(pending, name)
		}
		if len(pending) > 0 {
			time.Sleep(time.Second)
		}
	}
	log.Printf("CHECKS PASSED")
	select {}
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
