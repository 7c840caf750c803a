package main

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
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"
)

// servingCert is a self-signed certificate for 127.0.0.1 and localhost: the
// counting proxies serve it, and upstream's webhook server (which cannot be
// turned off) needs one in its cert dir.
type servingCert struct {
	certPEM, keyPEM []byte
	pair            tls.Certificate
}

func newServingCert() (*servingCert, error) {
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("127.0.0.1", []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"})
	if err != nil {
		return nil, fmt.Errorf("generating a serving certificate: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading the serving certificate: %w", err)
	}
	return &servingCert{certPEM: certPEM, keyPEM: keyPEM, pair: pair}, nil
}

// writeDir writes tls.crt and tls.key (controller-runtime's default names).
func (c *servingCert) writeDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), c.certPEM, 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "tls.key"), c.keyPEM, 0o600)
}

// reqKey classifies an API request: verb (get, list, watch, create,
// update, patch, delete, deletecollection) and resource ("jobs",
// "jobsets/status"; "-" for non-resource paths such as discovery).
type reqKey struct{ verb, resource string }

func (k reqKey) write() bool {
	switch k.verb {
	case "create", "update", "patch", "delete", "deletecollection":
		return true
	}
	return false
}

// counts are request counts by kind.
type counts map[reqKey]int64

func (c counts) minus(base counts) counts {
	out := counts{}
	for k, v := range c {
		if d := v - base[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

func (c counts) add(o counts) counts {
	out := maps.Clone(c)
	if out == nil {
		out = counts{}
	}
	for k, v := range o {
		out[k] += v
	}
	return out
}

func (c counts) total() (all, writes int64) {
	for k, v := range c {
		all += v
		if k.write() {
			writes += v
		}
	}
	return all, writes
}

// writesString lists the writes by kind, largest first, with how many of
// them failed (from failed, may be nil), e.g. "create jobs 4000, create
// namespaces 1000 (1000 failed)".
func (c counts) writesString(failed counts) string {
	type kv struct {
		k reqKey
		v int64
	}
	var list []kv
	for k, v := range c {
		if k.write() {
			list = append(list, kv{k, v})
		}
	}
	slices.SortFunc(list, func(a, b kv) int {
		if a.v != b.v {
			return int(b.v - a.v)
		}
		return strings.Compare(a.k.verb+a.k.resource, b.k.verb+b.k.resource)
	})
	var parts []string
	for _, e := range list {
		part := fmt.Sprintf("%s %s %d", e.k.verb, e.k.resource, e.v)
		if f := failed[e.k]; f > 0 {
			part += fmt.Sprintf(" (%d failed)", f)
		}
		parts = append(parts, part)
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// classify turns an apiserver request into a reqKey, from its method and
// path (/api/v1/namespaces/ns/jobs/name/status, /apis/g/v/...).
func classify(method, path, rawQuery string) reqKey {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	var rest []string
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		rest = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		rest = parts[3:]
	}
	if len(rest) == 0 {
		return reqKey{verb: strings.ToLower(method), resource: "-"}
	}
	// namespaces/<ns>/<resource>... is a namespaced resource; namespaces
	// and namespaces/<name>[/status] are the namespaces resource itself.
	if rest[0] == "namespaces" && len(rest) >= 3 {
		rest = rest[2:]
	}
	resource := rest[0]
	named := len(rest) >= 2
	if len(rest) >= 3 {
		resource += "/" + rest[2]
	}
	var verb string
	switch method {
	case http.MethodGet:
		q, _ := url.ParseQuery(rawQuery)
		switch {
		case q.Get("watch") == "true" || q.Get("watch") == "1":
			verb = "watch"
		case named:
			verb = "get"
		default:
			verb = "list"
		}
	case http.MethodPost:
		verb = "create"
	case http.MethodPut:
		verb = "update"
	case http.MethodPatch:
		verb = "patch"
	case http.MethodDelete:
		verb = "delete"
		if !named {
			verb = "deletecollection"
		}
	default:
		verb = strings.ToLower(method)
	}
	return reqKey{verb: verb, resource: resource}
}

// countingProxy is an HTTPS reverse proxy in front of an apiserver that
// counts every request a client makes, by verb and resource. Each process
// under test gets its own, so its requests are told apart from the
// benchmark's own and from the other processes'. It speaks HTTP/2 on both
// sides, as client-go does to a real apiserver.
//
// A request that carries its own credentials (an agent's hub token) is
// forwarded with them and no others; one without is forwarded with the
// admin credentials of the proxy's target config (the benchmark's
// kubeconfig files for admin processes then hold no secret at all).
type countingProxy struct {
	URL          string
	srv          *http.Server
	ln           net.Listener
	errorsLogged atomic.Int32

	mu     sync.Mutex
	counts counts
	// failed counts the requests answered with an error status (a create
	// that meets AlreadyExists, a conflict): wasted round trips.
	failed counts
}

// statusRecorder remembers the status code written through it; Unwrap
// keeps http.ResponseController (the reverse proxy's flushing) working.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func startCountingProxy(target *rest.Config, cert *servingCert) (*countingProxy, error) {
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
	p := &countingProxy{URL: "https://" + ln.Addr().String(), ln: ln, counts: counts{}, failed: counts{}}
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
			k := classify(r.Method, r.URL.Path, r.URL.RawQuery)
			p.mu.Lock()
			p.counts[k]++
			p.mu.Unlock()
			rec := &statusRecorder{ResponseWriter: w}
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

// snapshot copies the counts so far.
func (p *countingProxy) snapshot() counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.counts)
}

// failures copies the counts of failed requests so far.
func (p *countingProxy) failures() counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.failed)
}

func (p *countingProxy) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	// Shutdown waits for watches that never end: close them after a second.
	if err := p.srv.Shutdown(ctx); err != nil {
		_ = p.srv.Close()
	}
}

// writeKubeconfig writes a kubeconfig that reaches the apiserver through
// this proxy, trusting the proxy's certificate, with the given token (""
// for the proxy's admin credentials).
func (p *countingProxy) writeKubeconfig(path string, cert *servingCert, token string) error {
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
