package v1alpha1

import (
	"encoding/json"
	"errors"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// The relay: logs and exec of a fleet JobSet's Pods, served by the hub as
// an aggregated API and carried to the member over a connection its agent
// opens to the hub. The hub never holds member credentials. These names are
// shared by the hub (hub/relay), the agent (spoke/relay) and kubectl fleet.
const (
	// RelayGroup and RelayVersion are the aggregated API's group and
	// version (APIService v1alpha1.relay.fleet.jobset.x-k8s.io).
	RelayGroup   = "relay.fleet.jobset.x-k8s.io"
	RelayVersion = "v1alpha1"

	// RelayJobSets is the resource whose subresources RelayLog and
	// RelayExec users call: .../namespaces/<ns>/jobsets/<name>/log|exec.
	// Their RBAC verbs: get on jobsets/log, create (and get, for
	// WebSocket clients) on jobsets/exec, in group RelayGroup.
	RelayJobSets = "jobsets"
	RelayLog     = "log"
	RelayExec    = "exec"

	// RelayMembers/<cluster>/RelayAttach, in the member's namespace on the
	// hub, is where an agent opens its connection (an HTTP upgrade to
	// RelayProtocol); its RBAC verb is create, on its own member only.
	RelayMembers  = "members"
	RelayAttach   = "attach"
	RelayProtocol = "jobset-fleet-relay"

	// Pod selection, as JobSet users think of Pods (query parameters of log
	// and exec): a replicated Job, a Job index within it, a Pod index
	// within the Job, or one Pod by name.
	RelayParamReplicatedJob = "replicatedJob"
	RelayParamJobIndex      = "jobIndex"
	RelayParamPodIndex      = "podIndex"
	RelayParamPod           = "pod"

	// RelayPodHeader on an exec response names the Pod the command runs in.
	RelayPodHeader = "X-Jobset-Fleet-Pod"

	// What the hub tells the agent with every request: which dispatch (and
	// epoch) the JobSet runs as, and the hub JobSet's namespace and name.
	// The agent serves only Pods of the copy made for exactly that.
	RelayParamDispatch = "dispatch"
	RelayParamEpoch    = "epoch"
	RelayParamJobSet   = "jobset"
	RelayParamNS       = "namespace"
)

// WriteRelayStatus writes err as a Kubernetes Status, the form kubectl and
// client-go read errors in: an API error keeps its code and reason, any
// other error is an internal error.
func WriteRelayStatus(w http.ResponseWriter, err error) {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		status = apierrors.NewInternalError(err)
	}
	s := status.Status()
	s.Kind, s.APIVersion = "Status", "v1"
	body, _ := json.Marshal(s)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(s.Code))
	_, _ = w.Write(body)
}
