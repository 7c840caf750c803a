// Command jobset-fleet-workload is the container of the kind e2e tests
// (e2e/kindfleet): one static binary whose flags make each pod of a JobSet
// serve, call its peers by DNS name, fail on purpose, or hold, and log what
// it saw so that a test can assert it from the pod's log.
//
//	jobset-fleet-workload --listen :3389 --serve-until 1 \
//	    --call js-workers-0-1.js:3389 --call-from-index 0
//
// Every pod of that Job listens on 3389; the pod with completion index 0
// resolves js-workers-0-1.js through cluster DNS, GETs it, checks that the
// answer is that pod's hostname, logs "Reached ..." and exits 0; the others
// exit 0 once they have answered one request.
//
// `jobset-fleet-workload echo WORDS...` prints WORDS and exits: the image
// has no shell, and kubectl fleet exec needs something to run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	if err := run(); err != nil {
		log.Printf("FAILED: %v", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) > 1 && os.Args[1] == "echo" {
		fmt.Println(strings.Join(os.Args[2:], " "))
		return nil
	}
	var (
		listen        = flag.String("listen", "", "Serve HTTP here (e.g. :3389); GET / answers with the pod's hostname.")
		serveUntil    = flag.Int("serve-until", 0, "Exit once this many requests were answered (pods that call do not wait).")
		calls         = flag.String("call", "", "host:port targets, comma-separated: resolve each through DNS and GET /, retrying until --timeout.")
		callFromIndex = flag.Int("call-from-index", -1, "Only the pod whose $JOB_COMPLETION_INDEX is this calls; -1: every pod.")
		failOn        = flag.Int("fail-on-attempt", -1, "Exit 1 at start when $RESTART_ATTEMPT (the JobSet restart attempt, from the downward API) equals this.")
		hold          = flag.Bool("hold", false, "When done, keep running until SIGTERM.")
		tick          = flag.Duration("tick", 0, "While holding, log \"Tick <n>\" this often; 0: never.")
		printEnv      = flag.String("print-env", "", "Log these environment variables at start, comma-separated, as NAME=value.")
		timeout       = flag.Duration("timeout", 5*time.Minute, "Give up after this long.")
	)
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	hostname, _ := os.Hostname()
	index := os.Getenv("JOB_COMPLETION_INDEX")
	attempt := os.Getenv("RESTART_ATTEMPT")
	log.Printf("Starting on %s: completion index %q, restart attempt %q", hostname, index, attempt)
	for _, name := range split(*printEnv) {
		log.Printf("%s=%s", name, os.Getenv(name))
	}
	if *failOn >= 0 && attempt == strconv.Itoa(*failOn) {
		return fmt.Errorf("failing on purpose on restart attempt %s", attempt)
	}

	var served atomic.Int64
	servedOne := make(chan struct{}, 1024)
	if *listen != "" {
		srv := &http.Server{Addr: *listen, ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintln(w, hostname)
			log.Printf("Answered %s from %s", r.URL.Path, r.RemoteAddr)
			served.Add(1)
			servedOne <- struct{}{}
		})}
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			return fmt.Errorf("listening on %s: %w", *listen, err)
		}
		log.Printf("Listening on %s", ln.Addr())
		go func() { _ = srv.Serve(ln) }()
		// Shutdown lets the last answer reach its caller before exit.
		defer func() {
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer scancel()
			_ = srv.Shutdown(sctx)
		}()
	}

	calling := len(split(*calls)) > 0 && (*callFromIndex < 0 || index == strconv.Itoa(*callFromIndex))
	if calling {
		for _, target := range split(*calls) {
			if err := call(ctx, target); err != nil {
				return err
			}
		}
		log.Printf("Reached every peer")
	} else if *serveUntil > 0 {
		for served.Load() < int64(*serveUntil) {
			select {
			case <-servedOne:
			case <-ctx.Done():
				return fmt.Errorf("answered %d of %d requests: %w", served.Load(), *serveUntil, context.Cause(ctx))
			}
		}
		log.Printf("Answered %d requests", served.Load())
	}

	if *hold {
		log.Printf("Holding until SIGTERM")
		holdTicks(ctx, *tick)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return errors.New("held until --timeout without SIGTERM")
		}
		log.Printf("Stopping on signal")
	}
	log.Printf("Done")
	return nil
}

// holdTicks waits for ctx, logging "Tick <n>" every interval (if any).
func holdTicks(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			log.Printf("Tick %d", n)
		}
	}
}

// call resolves target's host through the cluster's DNS and GETs / until
// the pod there answers with its hostname, which is the first label of
// the name it was reached by (JobSet pods' hostnames).
func call(ctx context.Context, target string) error {
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return fmt.Errorf("target %q: %w", target, err)
	}
	want, _, _ := strings.Cut(host, ".")
	client := &http.Client{Timeout: 5 * time.Second}
	var last error
	for attempt := 1; ; attempt++ {
		addrs, err := net.DefaultResolver.LookupHost(ctx, host)
		if err == nil {
			addr := net.JoinHostPort(addrs[0], port)
			var body string
			if body, err = get(ctx, client, "http://"+addr+"/"); err == nil {
				if body != want {
					return fmt.Errorf("%s (%s) answered %q, want %q", target, addr, body, want)
				}
				log.Printf("Reached %s at %s: %s answered after %d attempts", target, addr, body, attempt)
				return nil
			}
		}
		if last == nil || err.Error() != last.Error() {
			log.Printf("Calling %s: %v (retrying)", target, err)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("calling %s: %w (last error: %v)", target, context.Cause(ctx), last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func get(ctx context.Context, client *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	return strings.TrimSpace(string(body)), nil
}

func split(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
