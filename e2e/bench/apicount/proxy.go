package apicount

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Proxy is an HTTPS reverse proxy in front of an apiserver that
// counts every request a client makes, by verb and resource. Each process
// under test gets its own, so its requests are told apart from the
// benchmark's own and from the other processes'. It speaks HTTP/2 on both
// sides, as client-go does to a real apiserver.
//
// A request that carries its own credentials (an agent's hub token) is
// forwarded with them and no others; one without is forwarded with the
// admin credentials of the proxy's target config (the benchmark's
// kubeconfig files for admin processes then hold no secret at all).
type Proxy struct {
	URL          string
	srv          *http.Server
	ln           net.Listener
	errorsLogged atomic.Int32

	mu     sync.Mutex
	counts Counts
	// failed counts the requests answered with an error status (a create
	// that meets AlreadyExists, a conflict): wasted round trips.
	failed Counts
	// bytes counts the response bytes by kind: a write returns the whole
	// object it stored, a watch streams it once per change, so they show
	// what each write of an object costs to encode.
	bytes Counts
}

// statusRecorder remembers the status code and counts the bytes written
// through it; Unwrap keeps http.ResponseController (the reverse proxy's
// flushing) working.
type statusRecorder struct {
	http.ResponseWriter
	code int
	// onWrite is told of every write, as it happens: a watch lasts the
	// whole run, and a snapshot must see what it streamed so far.
	onWrite func(n int)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	n, err := s.ResponseWriter.Write(b)
	s.onWrite(n)
	return n, err
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func Start(target *rest.Config, cert *ServingCert) (*Proxy, error) {
	targetURL, err := url.Parse(target.Host)
	if err != nil {
		return nil, fmt.Errorf("apiserver URL %q: %w", target.Host, err)
	}
	admin, err := rest.TransportFor(target)
	if err != nil {
		return nil, fmt.Errorf("admin transport for %s: %w", target.Host, err)
	}
	anonymous, err := rest.TransportFor(rest.AnonymousClientConfig(target))
	if err != nil {
		return nil, fmt.Errorf("transport for %s: %w", target.Host, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{URL: "https://" + ln.Addr().String(), ln: ln, counts: Counts{}, failed: Counts{}, bytes: Counts{}}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(targetURL)
			r.Out.Host = targetURL.Host
		},
		Transport: roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			if r.Header.Get("Authorization") != "" {
				return anonymous.RoundTrip(r)
			}
			return admin.RoundTrip(r)
		}),
		// Watches stream: flush every event as it comes.
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			// A client hanging up mid-watch is normal at shutdown; a few
			// other errors are worth a line, thousands are not.
			if !errors.Is(err, context.Canceled) && p.errorsLogged.Add(1) <= 5 {
				fmt.Fprintf(os.Stderr, "proxy %s: %s %s: %v\n", p.URL, r.Method, r.URL.Path, err)
			}
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	p.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			k := Classify(r.Method, r.URL.Path, r.URL.RawQuery)
			p.mu.Lock()
			p.counts[k]++
			p.mu.Unlock()
			rec := &statusRecorder{ResponseWriter: w, onWrite: func(n int) { p.mu.Lock(); p.bytes[k] += int64(n); p.mu.Unlock() }}
			rp.ServeHTTP(rec, r)
			if rec.code >= 400 {
				p.mu.Lock()
				p.failed[k]++
				p.mu.Unlock()
			}
		}),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert.pair}, NextProtos: []string{"h2", "http/1.1"}},
		ReadHeaderTimeout: time.Minute,
	}
	go func() { _ = p.srv.ServeTLS(ln, "", "") }()
	return p, nil
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Snapshot copies the counts so far.
func (p *Proxy) Snapshot() Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.counts)
}

// Bytes copies the response bytes by kind so far.
func (p *Proxy) Bytes() Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.bytes)
}

// Failures copies the counts of failed requests so far.
func (p *Proxy) Failures() Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.failed)
}

func (p *Proxy) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	// Shutdown waits for watches that never end: close them after a second.
	if err := p.srv.Shutdown(ctx); err != nil {
		_ = p.srv.Close()
	}
}

// WriteKubeconfig writes a kubeconfig that reaches the apiserver through
// this proxy, trusting the proxy's certificate, with the given token (""
// for the proxy's admin credentials).
func (p *Proxy) WriteKubeconfig(path string, cert *ServingCert, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["bench"] = &clientcmdapi.Cluster{Server: p.URL, CertificateAuthorityData: cert.certPEM}
	cfg.AuthInfos["bench"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["bench"] = &clientcmdapi.Context{Cluster: "bench", AuthInfo: "bench"}
	cfg.CurrentContext = "bench"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return nil
}
