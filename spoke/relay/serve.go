package relay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

type server struct {
	kube          kubernetes.Interface
	reader        client.Reader
	cluster       string
	memberURL     *url.URL
	execTransport http.RoundTripper
}

// Selection picks Pods of a JobSet as its users think of them; nil fields
// select all.
type Selection struct {
	ReplicatedJob string
	JobIndex      *int
	PodIndex      *int
	Pod           string
}

// ParseSelection reads a Selection from query parameters.
func ParseSelection(q url.Values) (Selection, error) {
	s := Selection{ReplicatedJob: q.Get(fleet.RelayParamReplicatedJob), Pod: q.Get(fleet.RelayParamPod)}
	for key, dst := range map[string]**int{fleet.RelayParamJobIndex: &s.JobIndex, fleet.RelayParamPodIndex: &s.PodIndex} {
		if v := q.Get(key); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return s, fmt.Errorf("%s must be a non-negative integer, not %q", key, v)
			}
			*dst = &n
		}
	}
	return s, nil
}

// Select returns the Pods of pods that s selects, ordered by replicated
// Job, Job index, Pod index and name.
func Select(pods []corev1.Pod, s Selection) []corev1.Pod {
	var out []corev1.Pod
	for _, p := range pods {
		switch {
		case s.Pod != "" && p.Name != s.Pod,
			s.ReplicatedJob != "" && p.Labels[jobset.ReplicatedJobNameKey] != s.ReplicatedJob,
			s.JobIndex != nil && p.Labels[jobset.JobIndexKey] != strconv.Itoa(*s.JobIndex),
			s.PodIndex != nil && podIndex(&p) != strconv.Itoa(*s.PodIndex):
			continue
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b corev1.Pod) int {
		if c := strings.Compare(a.Labels[jobset.ReplicatedJobNameKey], b.Labels[jobset.ReplicatedJobNameKey]); c != 0 {
			return c
		}
		if c := atoi(a.Labels[jobset.JobIndexKey]) - atoi(b.Labels[jobset.JobIndexKey]); c != 0 {
			return c
		}
		if c := atoi(podIndex(&a)) - atoi(podIndex(&b)); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

func podIndex(p *corev1.Pod) string {
	if v, ok := p.Labels[batchv1.JobCompletionIndexAnnotation]; ok {
		return v
	}
	return p.Annotations[batchv1.JobCompletionIndexAnnotation]
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// resolve finds the Pods a hub request may reach: those of the member copy
// made for exactly the dispatch and epoch the hub names, in the hub
// JobSet's namespace, narrowed by the request's selection. Any other Pod
// of the member is out of reach, whatever the request says.
func (s *server) resolve(ctx context.Context, q url.Values) ([]corev1.Pod, error) {
	ns, dispatch, epoch := q.Get(fleet.RelayParamNS), q.Get(fleet.RelayParamDispatch), q.Get(fleet.RelayParamEpoch)
	dispatchNS, _, _ := strings.Cut(dispatch, "/")
	if ns == "" || epoch == "" || dispatchNS != fleet.MemberNamespace(s.cluster) {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("relay: the request names no dispatch of member %s", s.cluster))
	}
	sel, err := ParseSelection(q)
	if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	var copies jobset.JobSetList
	if err := s.reader.List(ctx, &copies, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("listing JobSets in %s: %w", ns, err)
	}
	var memberCopy *jobset.JobSet
	for i := range copies.Items {
		js := &copies.Items[i]
		if js.Annotations[fleet.DispatchAnnotation] == dispatch && strconv.FormatInt(fleet.Epoch(js), 10) == epoch {
			memberCopy = js
		}
	}
	if memberCopy == nil {
		return nil, apierrors.NewNotFound(schema.GroupResource{Group: jobset.GroupVersion.Group, Resource: "jobsets"},
			fmt.Sprintf("%s (no memberCopy of dispatch %s at epoch %s on member %s)", q.Get(fleet.RelayParamJobSet), dispatch, epoch, s.cluster))
	}
	var pods corev1.PodList
	if err := s.reader.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{jobset.JobSetNameKey: memberCopy.Name}); err != nil {
		return nil, fmt.Errorf("listing Pods of %s/%s: %w", ns, memberCopy.Name, err)
	}
	// Only Pods the memberCopy made for this epoch: a Pod left by an earlier
	// placement, or one someone labelled by hand, is not served.
	own := slices.DeleteFunc(pods.Items, func(p corev1.Pod) bool {
		return p.Annotations[fleet.PodEpochAnnotation] != epoch || !ownedByJobOf(&p, memberCopy)
	})
	selected := Select(own, sel)
	if len(selected) == 0 {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, fmt.Sprintf("(none of JobSet %s/%s matches the selection on member %s)", ns, q.Get(fleet.RelayParamJobSet), s.cluster))
	}
	return selected, nil
}

// ownedByJobOf: the Pod's controller is a Job, and the Pod carries the
// memberCopy's JobSet name label; the JobSet controller sets both.
func ownedByJobOf(p *corev1.Pod, js *jobset.JobSet) bool {
	ref := metav1.GetControllerOf(p)
	return ref != nil && ref.Kind == "Job" && p.Labels[jobset.JobSetNameKey] == js.Name
}

// serveLog streams the logs of the selected Pods' containers, each line
// prefixed with [pod/container]: in order when not following, merged as
// they come when following.
func (s *server) serveLog(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	pods, err := s.resolve(r.Context(), q)
	if err != nil {
		writeError(w, err)
		return
	}
	opts, err := logOptions(q)
	if err != nil {
		writeError(w, apierrors.NewBadRequest(err.Error()))
		return
	}
	type stream struct {
		prefix string
		body   io.ReadCloser
	}
	var streams []stream
	var openErrs []error
	for _, p := range pods {
		for _, c := range containers(&p, q.Get("container")) {
			o := *opts
			o.Container = c
			body, err := s.kube.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &o).Stream(r.Context())
			if err != nil {
				openErrs = append(openErrs, fmt.Errorf("[%s/%s] %w", p.Name, c, err))
				continue
			}
			streams = append(streams, stream{prefix: "[" + p.Name + "/" + c + "] ", body: body})
		}
	}
	if len(streams) == 0 {
		writeError(w, errors.Join(openErrs...))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	out := &lineWriter{w: w}
	for _, err := range openErrs {
		out.line("", "error: "+err.Error())
	}
	copyLines := func(st stream) {
		defer func() { _ = st.body.Close() }()
		sc := bufio.NewScanner(st.body)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			out.line(st.prefix, sc.Text())
		}
	}
	if !opts.Follow {
		for _, st := range streams {
			copyLines(st)
		}
		return
	}
	var wg sync.WaitGroup
	for _, st := range streams {
		wg.Go(func() { copyLines(st) })
	}
	wg.Wait()
}

// lineWriter writes whole lines from several goroutines and flushes each.
type lineWriter struct {
	mu sync.Mutex
	w  http.ResponseWriter
}

func (l *lineWriter) line(prefix, text string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = io.WriteString(l.w, prefix+text+"\n")
	if f, ok := l.w.(http.Flusher); ok {
		f.Flush()
	}
}

// containers are the named container, else all of the Pod's.
func containers(p *corev1.Pod, name string) []string {
	if name != "" {
		return []string{name}
	}
	var names []string
	for _, c := range p.Spec.Containers {
		names = append(names, c.Name)
	}
	return names
}

// logOptions are kubectl logs' options from the query.
func logOptions(q url.Values) (*corev1.PodLogOptions, error) {
	o := &corev1.PodLogOptions{}
	var err error
	boolParam := func(key string) bool {
		v, e := strconv.ParseBool(q.Get(key))
		if q.Get(key) != "" && e != nil {
			err = fmt.Errorf("%s: %w", key, e)
		}
		return v
	}
	intParam := func(key string) *int64 {
		if q.Get(key) == "" {
			return nil
		}
		v, e := strconv.ParseInt(q.Get(key), 10, 64)
		if e != nil || v < 0 {
			err = fmt.Errorf("%s must be a non-negative integer, not %q", key, q.Get(key))
		}
		return &v
	}
	o.Follow = boolParam("follow")
	o.Previous = boolParam("previous")
	o.Timestamps = boolParam("timestamps")
	o.SinceSeconds = intParam("sinceSeconds")
	o.TailLines = intParam("tailLines")
	return o, err
}

// execParams are what the member's pods/exec accepts.
var execParams = []string{"command", "container", "stdin", "stdout", "stderr", "tty"}

// serveExec runs the command in the first selected Pod: it forwards the
// (upgrading) request to the member's pods/exec with the agent's member
// credentials, and names the Pod in the response.
func (s *server) serveExec(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	pods, err := s.resolve(r.Context(), q)
	if err != nil {
		writeError(w, err)
		return
	}
	pod := pods[0]
	target := *s.memberURL
	target.Path = strings.TrimSuffix(target.Path, "/") + "/api/v1/namespaces/" + pod.Namespace + "/pods/" + pod.Name + "/exec"
	params := url.Values{}
	for _, k := range execParams {
		if v, ok := q[k]; ok {
			params[k] = v
		}
	}
	if params.Get("container") == "" {
		params.Set("container", defaultContainer(&pod))
	}
	target.RawQuery = params.Encode()
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = &target
			pr.Out.Host = target.Host
			// Only what the streaming protocol needs crosses: never the
			// hub's headers.
			pr.Out.Header = streamingHeaders(pr.In.Header)
		},
		Transport:     s.execTransport,
		FlushInterval: -1,
		ModifyResponse: func(resp *http.Response) error {
			resp.Header.Set(fleet.RelayPodHeader, pod.Name+"/"+params.Get("container"))
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeError(w, apierrors.NewServiceUnavailable(fmt.Sprintf("member %s: exec in Pod %s/%s: %v", s.cluster, pod.Namespace, pod.Name, err)))
		},
	}
	proxy.ServeHTTP(w, r)
}

// defaultContainer is kubectl's: the default-container annotation, else
// the first container.
func defaultContainer(p *corev1.Pod) string {
	if c := p.Annotations["kubectl.kubernetes.io/default-container"]; c != "" {
		return c
	}
	if len(p.Spec.Containers) > 0 {
		return p.Spec.Containers[0].Name
	}
	return ""
}

// streamingHeaders keeps the headers an exec upgrade (SPDY or WebSocket)
// needs.
func streamingHeaders(in http.Header) http.Header {
	out := http.Header{}
	for k, v := range in {
		switch ck := http.CanonicalHeaderKey(k); {
		case ck == "Connection", ck == "Upgrade", ck == "X-Stream-Protocol-Version", ck == "Content-Type",
			strings.HasPrefix(ck, "Sec-Websocket-"):
			out[ck] = v
		}
	}
	return out
}

func writeError(w http.ResponseWriter, err error) { fleet.WriteRelayStatus(w, err) }
