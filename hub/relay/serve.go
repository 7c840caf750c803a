package relay

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"

	"github.com/hashicorp/yamux"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

var groupVersion = "/apis/" + fleet.RelayGroup + "/" + fleet.RelayVersion

// ServeHTTP routes the relay API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/healthz", "/readyz", "/livez":
		_, _ = w.Write([]byte("ok"))
		return
	case "/apis", "/apis/":
		writeJSON(w, discoveryGroupList())
		return
	case "/apis/" + fleet.RelayGroup:
		writeJSON(w, discoveryGroup())
		return
	case groupVersion:
		writeJSON(w, discoveryResources())
		return
	}
	// .../namespaces/<ns>/<resource>/<name>/<subresource>
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, groupVersion+"/"), "/")
	if !strings.HasPrefix(r.URL.Path, groupVersion+"/") || len(parts) != 5 || parts[0] != "namespaces" {
		fleet.WriteRelayStatus(w, apierrors.NewNotFound(schema.GroupResource{Group: fleet.RelayGroup}, r.URL.Path))
		return
	}
	ns, resource, name, sub := parts[1], parts[2], parts[3], parts[4]
	resp, ok, err := s.authn.AuthenticateRequest(r)
	if err != nil || !ok || resp == nil {
		fleet.WriteRelayStatus(w, apierrors.NewUnauthorized("relay: only the hub kube-apiserver may call the relay API"))
		return
	}
	u := resp.User
	switch {
	case resource == fleet.RelayMembers && sub == fleet.RelayAttach && r.Method == http.MethodPost:
		s.serveAttach(w, r, u, ns, name)
	case resource == fleet.RelayJobSets && sub == fleet.RelayLog && r.Method == http.MethodGet:
		s.serveJobSet(w, r, u, ns, name, sub, "get")
	case resource == fleet.RelayJobSets && sub == fleet.RelayExec && (r.Method == http.MethodPost || r.Method == http.MethodGet):
		s.serveJobSet(w, r, u, ns, name, sub, "create")
	default:
		fleet.WriteRelayStatus(w, apierrors.NewMethodNotSupported(schema.GroupResource{Group: fleet.RelayGroup, Resource: resource + "/" + sub}, r.Method))
	}
}

// authorize asks the hub's authorizer whether u may verb
// resource/sub name in ns of the relay group, and writes a Forbidden when
// not.
func (s *Server) authorize(ctx context.Context, w http.ResponseWriter, u user.Info, verb, ns, resource, sub, name string) bool {
	extra := map[string]authorizationv1.ExtraValue{}
	for k, v := range u.GetExtra() {
		extra[k] = v
	}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: u.GetName(), UID: u.GetUID(), Groups: u.GetGroups(), Extra: extra,
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: ns, Verb: verb, Group: fleet.RelayGroup, Resource: resource, Subresource: sub, Name: name,
		},
	}}
	got, err := s.kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		fleet.WriteRelayStatus(w, apierrors.NewInternalError(fmt.Errorf("relay: asking the hub's authorizer: %w", err)))
		return false
	}
	if !got.Status.Allowed {
		why := fmt.Sprintf("User %q cannot %s resource %q in API group %q in the namespace %q (the hub's RBAC must grant %s on %s/%s)",
			u.GetName(), verb, resource+"/"+sub, fleet.RelayGroup, ns, verb, resource, sub)
		if got.Status.Reason != "" {
			why += ": " + got.Status.Reason
		}
		fleet.WriteRelayStatus(w, apierrors.NewForbidden(schema.GroupResource{Group: fleet.RelayGroup, Resource: resource + "/" + sub}, name, fmt.Errorf("%s", why)))
		return false
	}
	return true
}

// serveAttach takes an agent's connection: the caller must be a
// ServiceAccount of the member's own hub namespace, allowed by RBAC to
// create members/<cluster>/attach there.
func (s *Server) serveAttach(w http.ResponseWriter, r *http.Request, u user.Info, ns, cluster string) {
	saNS, _, err := serviceaccount.SplitUsername(u.GetName())
	if ns != fleet.MemberNamespace(cluster) || err != nil || saNS != ns {
		fleet.WriteRelayStatus(w, apierrors.NewForbidden(schema.GroupResource{Group: fleet.RelayGroup, Resource: fleet.RelayMembers + "/" + fleet.RelayAttach}, cluster,
			fmt.Errorf("only the agent of member %s (a ServiceAccount of namespace %s) may attach, not %q", cluster, fleet.MemberNamespace(cluster), u.GetName())))
		return
	}
	if !s.authorize(r.Context(), w, u, "create", ns, fleet.RelayMembers, fleet.RelayAttach, cluster) {
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), fleet.RelayProtocol) {
		fleet.WriteRelayStatus(w, apierrors.NewBadRequest("relay: attach needs Upgrade: "+fleet.RelayProtocol))
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		fleet.WriteRelayStatus(w, apierrors.NewInternalError(fmt.Errorf("relay: connection cannot be taken over")))
		return
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		return
	}
	if _, err := buf.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + fleet.RelayProtocol + "\r\n\r\n"); err != nil || buf.Flush() != nil {
		_ = conn.Close()
		return
	}
	session, err := yamux.Client(&bufferedConn{Conn: conn, r: buf.Reader}, yamuxConfig())
	if err != nil {
		_ = conn.Close()
		return
	}
	logger := log.FromContext(r.Context()).WithValues("cluster", cluster)
	logger.Info("Relay: agent attached", "user", u.GetName())
	s.tunnels.set(cluster, session)
	<-session.CloseChan()
	s.tunnels.remove(cluster, session)
	logger.Info("Relay: agent detached")
}

// serveJobSet forwards a user's log or exec request to the agent of the
// member the JobSet runs on.
func (s *Server) serveJobSet(w http.ResponseWriter, r *http.Request, u user.Info, ns, name, sub, verb string) {
	ctx := r.Context()
	if !s.authorize(ctx, w, u, verb, ns, fleet.RelayJobSets, sub, name) {
		return
	}
	js, d, err := s.placement(ctx, ns, name)
	if err != nil {
		fleet.WriteRelayStatus(w, err)
		return
	}
	cluster := js.Status.Fleet.Cluster
	session := s.tunnels.get(cluster)
	if session == nil {
		fleet.WriteRelayStatus(w, apierrors.NewServiceUnavailable(fmt.Sprintf("JobSet %s/%s runs on member %s, whose agent has no relay connection to the hub", ns, name, cluster)))
		return
	}
	q := r.URL.Query()
	// The hub, not the caller, says which copy: these override anything
	// the request carries.
	q.Set(fleet.RelayParamNS, ns)
	q.Set(fleet.RelayParamJobSet, name)
	q.Set(fleet.RelayParamDispatch, fleet.DispatchKey(d))
	q.Set(fleet.RelayParamEpoch, strconv.FormatInt(d.Spec.Epoch, 10))
	target := &url.URL{Scheme: "http", Host: cluster, Path: "/" + sub, RawQuery: q.Encode()}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = target
			pr.Out.Host = target.Host
			pr.Out.Header = streamingHeaders(pr.In.Header)
		},
		Transport: &http.Transport{
			DialContext:       func(context.Context, string, string) (net.Conn, error) { return session.Open() },
			DisableKeepAlives: true,
		},
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			fleet.WriteRelayStatus(w, apierrors.NewServiceUnavailable(fmt.Sprintf("relay to member %s: %v", cluster, err)))
		},
	}
	if sub == fleet.RelayExec {
		proxy.ModifyResponse = func(resp *http.Response) error {
			if resp.StatusCode == http.StatusSwitchingProtocols {
				s.recordExec(js, u, resp.Header.Get(fleet.RelayPodHeader), cluster, q["command"])
			}
			resp.Header.Del(fleet.RelayPodHeader)
			return nil
		}
	}
	proxy.ServeHTTP(w, r)
}

// placement is the JobSet and the dispatch it runs as now.
func (s *Server) placement(ctx context.Context, ns, name string) (*jobset.JobSet, *fleet.JobSetDispatch, error) {
	js := &jobset.JobSet{}
	if err := s.reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, js); err != nil {
		return nil, nil, err
	}
	if js.Status.Fleet == nil || js.Status.Fleet.Cluster == "" {
		return nil, nil, apierrors.NewConflict(schema.GroupResource{Group: jobset.GroupVersion.Group, Resource: "jobsets"}, name,
			fmt.Errorf("JobSet %s/%s is not placed on a member yet, so it has no Pods (kubectl fleet why %s)", ns, name, name))
	}
	var dispatches fleet.JobSetDispatchList
	if err := s.reader.List(ctx, &dispatches, client.InNamespace(fleet.MemberNamespace(js.Status.Fleet.Cluster)),
		client.MatchingLabels{fleet.OriginUIDLabel: string(js.UID)}); err != nil {
		return nil, nil, err
	}
	for i := range dispatches.Items {
		d := &dispatches.Items[i]
		if d.Spec.Epoch == js.Status.Fleet.Epoch && d.DeletionTimestamp == nil {
			return js, d, nil
		}
	}
	return nil, nil, apierrors.NewConflict(schema.GroupResource{Group: jobset.GroupVersion.Group, Resource: "jobsets"}, name,
		fmt.Errorf("JobSet %s/%s has no live dispatch for epoch %d on member %s", ns, name, js.Status.Fleet.Epoch, js.Status.Fleet.Cluster))
}

// maxCommandInEvent bounds the command as recorded.
const maxCommandInEvent = 256

// recordExec records an exec as an event on the hub JobSet: who ran what,
// where.
func (s *Server) recordExec(js *jobset.JobSet, u user.Info, pod, cluster string, command []string) {
	cmd := fleet.Bounded(strings.Join(command, " "), maxCommandInEvent)
	s.recorder.Eventf(js, nil, corev1.EventTypeNormal, "Exec", "Exec", "%s",
		fleet.Bounded(fmt.Sprintf("%s ran %q in Pod %s on member %s", u.GetName(), cmd, pod, cluster), fleet.MaxEventNote))
}

// streamingHeaders keeps the headers a log request or an exec upgrade
// (SPDY or WebSocket) needs; identity headers never reach the agent.
func streamingHeaders(in http.Header) http.Header {
	out := http.Header{}
	for k, v := range in {
		switch ck := http.CanonicalHeaderKey(k); {
		case ck == "Connection", ck == "Upgrade", ck == "X-Stream-Protocol-Version", ck == "Content-Type", ck == "Accept",
			strings.HasPrefix(ck, "Sec-Websocket-"):
			out[ck] = v
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		fleet.WriteRelayStatus(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

func discoveryGroup() metav1.APIGroup {
	gv := metav1.GroupVersionForDiscovery{GroupVersion: fleet.RelayGroup + "/" + fleet.RelayVersion, Version: fleet.RelayVersion}
	return metav1.APIGroup{TypeMeta: metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"}, Name: fleet.RelayGroup,
		Versions: []metav1.GroupVersionForDiscovery{gv}, PreferredVersion: gv}
}

func discoveryGroupList() metav1.APIGroupList {
	return metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}, Groups: []metav1.APIGroup{discoveryGroup()}}
}

func discoveryResources() metav1.APIResourceList {
	return metav1.APIResourceList{
		TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
		GroupVersion: fleet.RelayGroup + "/" + fleet.RelayVersion,
		APIResources: []metav1.APIResource{
			{Name: fleet.RelayJobSets + "/" + fleet.RelayLog, Namespaced: true, Kind: "JobSetLog", Verbs: metav1.Verbs{"get"}},
			{Name: fleet.RelayJobSets + "/" + fleet.RelayExec, Namespaced: true, Kind: "JobSetExec", Verbs: metav1.Verbs{"create", "get"}},
			{Name: fleet.RelayMembers + "/" + fleet.RelayAttach, Namespaced: true, Kind: "MemberAttach", Verbs: metav1.Verbs{"create"}},
		},
	}
}
