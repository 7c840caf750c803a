package fence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"

	clientauthenticationv1 "k8s.io/client-go/pkg/apis/clientauthentication/v1"
	"k8s.io/client-go/rest"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

// execInfoEnv is where an exec credential plugin reads its input
// (client.authentication.k8s.io).
const execInfoEnv = "KUBERNETES_EXEC_INFO"

// withCredentials runs cfg's exec plugin and returns cfg with the
// credentials it handed out instead of the plugin, and when they expire
// (zero: they do not). client-go runs exec plugins without any time limit,
// and a plugin that hangs would hold its caller forever; here the plugin is
// killed when ctx ends.
func withCredentials(ctx context.Context, cfg *rest.Config) (*rest.Config, time.Time, error) {
	out := rest.CopyConfig(cfg)
	ec := cfg.ExecProvider
	if ec == nil {
		return out, time.Time{}, nil
	}
	out.ExecProvider = nil
	switch ec.APIVersion {
	case "client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1":
	default:
		return nil, time.Time{}, fmt.Errorf("exec plugin %s: unsupported apiVersion %q", ec.Command, ec.APIVersion)
	}
	// v1 and v1beta1 ExecCredentials have the same shape.
	input := clientauthenticationv1.ExecCredential{}
	input.APIVersion, input.Kind = ec.APIVersion, "ExecCredential"
	if ec.ProvideClusterInfo {
		input.Spec.Cluster = &clientauthenticationv1.Cluster{
			Server:                   cfg.Host,
			TLSServerName:            cfg.ServerName,
			InsecureSkipTLSVerify:    cfg.Insecure,
			CertificateAuthorityData: cfg.CAData,
		}
		if ec.Config != nil {
			raw, err := json.Marshal(ec.Config)
			if err != nil {
				return nil, time.Time{}, fmt.Errorf("exec plugin %s: cluster config: %w", ec.Command, err)
			}
			input.Spec.Cluster.Config.Raw = raw
		}
	}
	info, err := json.Marshal(input)
	if err != nil {
		return nil, time.Time{}, err
	}
	cmd := exec.CommandContext(ctx, ec.Command, ec.Args...)
	cmd.Env = append(os.Environ(), execInfoEnv+"="+string(info))
	for _, e := range ec.Env {
		cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
	}
	// Children of the plugin that keep its output open must not hold us.
	cmd.WaitDelay = time.Second
	stdout, err := cmd.Output()
	if ctx.Err() != nil {
		return nil, time.Time{}, fmt.Errorf("exec plugin %s gave no credentials in time: %w", ec.Command, ctx.Err())
	}
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) && len(exit.Stderr) > 0 {
			err = fmt.Errorf("%w: %s", err, fleet.Bounded(string(exit.Stderr), 512))
		}
		return nil, time.Time{}, fmt.Errorf("exec plugin %s: %w", ec.Command, err)
	}
	var cred clientauthenticationv1.ExecCredential
	if err := json.Unmarshal(stdout, &cred); err != nil {
		return nil, time.Time{}, fmt.Errorf("exec plugin %s: decoding its output: %w", ec.Command, err)
	}
	switch s := cred.Status; {
	case cred.APIVersion != ec.APIVersion:
		return nil, time.Time{}, fmt.Errorf("exec plugin %s answered with apiVersion %q, want %q", ec.Command, cred.APIVersion, ec.APIVersion)
	case s == nil || (s.Token == "" && s.ClientCertificateData == ""):
		return nil, time.Time{}, fmt.Errorf("exec plugin %s returned neither a token nor a client certificate", ec.Command)
	case (s.ClientCertificateData == "") != (s.ClientKeyData == ""):
		return nil, time.Time{}, fmt.Errorf("exec plugin %s returned only one of certificate and key", ec.Command)
	}
	out.BearerToken = cred.Status.Token
	out.CertData, out.KeyData = []byte(cred.Status.ClientCertificateData), []byte(cred.Status.ClientKeyData)
	var expires time.Time
	if cred.Status.ExpirationTimestamp != nil {
		expires = cred.Status.ExpirationTimestamp.Time
	}
	return out, expires, nil
}
