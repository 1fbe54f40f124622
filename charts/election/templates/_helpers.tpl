{{/*
Names, labels and the values computed from several others.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "election.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object name: fullnameOverride, else the release name when it contains the chart
name, else "<release>-<chart>". Kept to 63 characters (a DNS label); the longest suffix the chart
adds ("-zookeeper-headless") still leaves a valid Service name for fullnames up to 44 characters.
*/}}
{{- define "election.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "election.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "election.labels" -}}
helm.sh/chart: {{ include "election.chart" . }}
{{ include "election.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "election.name" . }}
{{- end }}

{{/* The labels selectors use; a component label is added per workload. */}}
{{- define "election.selectorLabels" -}}
app.kubernetes.io/name: {{ include "election.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector labels of the app pods. */}}
{{- define "election.appSelectorLabels" -}}
{{ include "election.selectorLabels" . }}
app.kubernetes.io/component: election
{{- end }}

{{/* Selector labels of the ZooKeeper pods. */}}
{{- define "election.zookeeperSelectorLabels" -}}
{{ include "election.selectorLabels" . }}
app.kubernetes.io/component: zookeeper
{{- end }}

{{- define "election.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "election.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "election.zookeeper.fullname" -}}
{{- printf "%s-zookeeper" (include "election.fullname" .) }}
{{- end }}

{{- define "election.zookeeper.headless" -}}
{{- printf "%s-zookeeper-headless" (include "election.fullname" .) }}
{{- end }}

{{- define "election.claimName" -}}
{{- default (printf "%s-files" (include "election.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{/* An image reference from {repository, tag, digest}; $default is the tag when none is given. */}}
{{- define "election.imageRef" -}}
{{- $image := index . 0 }}
{{- $default := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $default $image.tag | toString) }}
{{- end }}
{{- end }}

{{- define "election.image" -}}
{{- include "election.imageRef" (list .Values.image .Chart.AppVersion) }}
{{- end }}

{{/* ELECTION_ZK_SERVERS: the bundled ensemble's client Service, or the external servers. */}}
{{- define "election.zkServers" -}}
{{- if .Values.zookeeper.enabled }}
{{- printf "%s.%s.svc.%s:%d" (include "election.zookeeper.fullname" .) .Release.Namespace .Values.clusterDomain (int .Values.zookeeper.ports.client) }}
{{- else if .Values.zookeeper.external.servers }}
{{- join "," .Values.zookeeper.external.servers }}
{{- else }}
{{- fail "zookeeper.external.servers must list the ZooKeeper servers (host:port) when zookeeper.enabled is false" }}
{{- end }}
{{- end }}

{{/*
ZOO_SERVERS of the official image: "server.N=<pod N-1>.<headless>...:quorum:election;client", one per
replica, space-separated (the image writes one line per word into zoo.cfg).
*/}}
{{- define "election.zooServers" -}}
{{- $zk := .Values.zookeeper }}
{{- $fullname := include "election.zookeeper.fullname" . }}
{{- $domain := printf "%s.%s.svc.%s" (include "election.zookeeper.headless" .) .Release.Namespace .Values.clusterDomain }}
{{- $servers := list }}
{{- range $i := until (int $zk.replicaCount) }}
{{- $servers = append $servers (printf "server.%d=%s-%d.%s:%d:%d;%d" (add1 $i) $fullname $i $domain (int $zk.ports.quorum) (int $zk.ports.election) (int $zk.ports.client)) }}
{{- end }}
{{- join " " $servers }}
{{- end }}

{{/*
Seconds in a Go duration ("1m30s", "250ms", "1h"), as a float: the chart compares the app's shutdown
timeout with the pod's grace period. The schema has already checked the syntax.
*/}}
{{- define "election.durationSeconds" -}}
{{- $units := dict "ns" 0.000000001 "us" 0.000001 "µs" 0.000001 "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 }}
{{- $total := 0.0 }}
{{- range $part := regexFindAll "[0-9]*\\.?[0-9]+(ns|us|µs|ms|s|m|h)" . -1 }}
{{- $unit := regexFind "(ns|us|µs|ms|s|m|h)$" $part }}
{{- $number := trimSuffix $unit $part }}
{{- $total = addf $total (mulf (float64 $number) (get $units $unit)) }}
{{- end }}
{{- $total }}
{{- end }}

{{/* Required pod anti-affinity or preferred, from "hard"/"soft", for the given selector labels. */}}
{{- define "election.antiAffinity" -}}
{{- $mode := index . 0 }}
{{- $labels := index . 1 }}
{{- if eq $mode "hard" }}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- $labels | nindent 10 }}
{{- else if eq $mode "soft" }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- $labels | nindent 12 }}
{{- end }}
{{- end }}

{{- define "election.zookeeper.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
checkov skips shared by every pod, as checkov.io/skipN annotations:
- CKV_K8S_43 (image by digest): image.digest / zookeeper.image.digest pin by digest when set; the
  defaults are version tags, which locally built images (skaffold, kind load) only have.
- CKV_K8S_15 (imagePullPolicy Always): IfNotPresent is right for version tags and digests, and Always
  would break images side-loaded into local clusters; image.pullPolicy sets it.
*/}}
{{- define "election.checkovImageSkips" -}}
checkov.io/skip1: CKV_K8S_43=pinning by digest is optional (image.digest); the defaults are version tags
checkov.io/skip2: CKV_K8S_15=IfNotPresent suits version tags and side-loaded dev images; image.pullPolicy changes it
{{- end }}

{{/* Name of the Secret with the app's ZooKeeper credentials; empty when there are none. */}}
{{- define "election.zkAuthSecret" -}}
{{- if .Values.zookeeper.auth.existingSecret }}
{{- .Values.zookeeper.auth.existingSecret }}
{{- else if .Values.zookeeper.auth.credentials }}
{{- printf "%s-zookeeper-auth" (include "election.fullname" .) }}
{{- end }}
{{- end }}

{{/*
TLS to ZooKeeper (zookeeper.tls): the user's Secret (ca.crt; tls.crt and tls.key with
clientCertificate, the keys of a cert-manager Certificate's Secret) mounted read-only where
ELECTION_ZK_TLS_CA/_CERT/_KEY point. Only for an external ensemble: the bundled one serves plaintext.
The app pods and the helm test pod (`election status` connects too) share these three pieces.
*/}}
{{- define "election.zkTlsDir" -}}
/etc/election/zk-tls
{{- end }}

{{/* The refusals of zookeeper.tls; empty when the values are coherent. */}}
{{- define "election.zkTlsCheck" -}}
{{- $tls := .Values.zookeeper.tls }}
{{- if $tls.enabled }}
{{- if .Values.zookeeper.enabled }}
{{- fail "zookeeper.tls.enabled needs an external ZooKeeper ensemble: the bundled one (zookeeper.enabled=true) serves plaintext only; set zookeeper.enabled=false and list the servers' secureClientPort in zookeeper.external.servers" }}
{{- end }}
{{- if not $tls.existingSecret }}
{{- fail "zookeeper.tls.enabled needs zookeeper.tls.existingSecret: the name of a Secret with the CA certificate under ca.crt (and tls.crt, tls.key with zookeeper.tls.clientCertificate), such as a cert-manager Certificate's Secret" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The env entries of the TLS files (a list, to nindent under `env:`); empty without TLS. */}}
{{- define "election.zkTlsEnv" -}}
{{- if .Values.zookeeper.tls.enabled }}
{{- $dir := include "election.zkTlsDir" . -}}
# TLS to ZooKeeper: files of the Secret mounted at {{ $dir }}.
- name: ELECTION_ZK_TLS_CA
  value: {{ printf "%s/ca.crt" $dir | quote }}
{{- if .Values.zookeeper.tls.clientCertificate }}
- name: ELECTION_ZK_TLS_CERT
  value: {{ printf "%s/tls.crt" $dir | quote }}
- name: ELECTION_ZK_TLS_KEY
  value: {{ printf "%s/tls.key" $dir | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* The volumeMount of the TLS Secret (a list item); empty without TLS. */}}
{{- define "election.zkTlsVolumeMount" -}}
{{- if .Values.zookeeper.tls.enabled -}}
- name: zk-tls
  mountPath: {{ include "election.zkTlsDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{/*
The volume of the TLS Secret (a list item); empty without TLS. Only the keys the app uses are
projected (a missing one stops the pod with an event that names it), readable by the owner and the
pod's fsGroup (podSecurityContext.fsGroup), not by others.
*/}}
{{- define "election.zkTlsVolume" -}}
{{- if .Values.zookeeper.tls.enabled -}}
- name: zk-tls
  secret:
    secretName: {{ .Values.zookeeper.tls.existingSecret }}
    defaultMode: 0440
    items:
      - key: ca.crt
        path: ca.crt
      {{- if .Values.zookeeper.tls.clientCertificate }}
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
      {{- end }}
{{- end }}
{{- end }}

{{/*
A list of words as one POSIX shell line that shlex.split (ELECTION_EXEC's parser) turns back into the
same list: a word of only safe characters as it is, any other in single quotes, each ' as '"'"'
(Python's shlex.quote).
*/}}
{{- define "election.shellJoin" -}}
{{- $words := list }}
{{- range . }}
{{- $word := toString . }}
{{- if regexMatch "^[A-Za-z0-9_@%+=:,./-]+$" $word }}
{{- $words = append $words $word }}
{{- else }}
{{- $words = append $words (printf "'%s'" (replace "'" "'\"'\"'" $word)) }}
{{- end }}
{{- end }}
{{- join " " $words }}
{{- end }}

{{/*
The refusals of exec (the arithmetic of README, "Running your command"); empty when the values are
coherent or no command is set. S is the session the servers grant: the one asked for, clamped to
[2, 20] x zookeeper.tickTime by the bundled ensemble. The lease is 2/3 S and the leader confirms it
every lease/6, so the grace G between SIGTERM and SIGKILL fits when G <= (4/9) S - 250ms: the SIGKILL
lands 250ms before a lease that stopped being confirmed runs out. (The app refuses a larger grace at
start with the session it asks for; the chart also sees the bundled servers' clamp.) The Stopping
path is the grace, then the kill and the release (closing the session, one round-trip), for which
the app keeps 1s: config.shutdownTimeout must be at least the grace + 1s (the app's own rule,
app.config.check_exec_timing), and terminationGracePeriodSeconds must exceed the shutdown timeout
(checked in statefulset.yaml).
*/}}
{{- define "election.execCheck" -}}
{{- $exec := .Values.exec }}
{{- if $exec.command }}
{{- if not (toString (first $exec.command)) }}
{{- fail "exec.command: the first item, the program to run, is empty" }}
{{- end }}
{{- $asked := include "election.durationSeconds" .Values.config.zkSessionTimeout | float64 }}
{{- $session := $asked }}
{{- $clamp := "" }}
{{- if .Values.zookeeper.enabled }}
{{- $tick := divf (int .Values.zookeeper.tickTime) 1000.0 }}
{{- $session = minf (maxf $asked (mulf 2.0 $tick)) (mulf 20.0 $tick) }}
{{- if ne $session $asked }}
{{- $clamp = printf ", granted as %gs by the bundled servers: 2-20 x zookeeper.tickTime" $session }}
{{- end }}
{{- end }}
{{- $stop := include "election.durationSeconds" $exec.stopTimeout | float64 }}
{{- $most := subf (divf (mulf 4.0 (minf $asked $session)) 9.0) 0.25 }}
{{- if gt $stop $most }}
{{- fail (printf "exec.stopTimeout (%s) cannot fit the lease: the SIGKILL must land 250ms before a lease of 2/3 of the session runs out, so the grace is at most 4/9 of config.zkSessionTimeout (%s%s) minus 250ms = %.2fs" $exec.stopTimeout .Values.config.zkSessionTimeout $clamp (maxf $most 0.0)) }}
{{- end }}
{{- $need := addf $stop 1.0 }}
{{- $shutdown := include "election.durationSeconds" .Values.config.shutdownTimeout | float64 }}
{{- if lt $shutdown $need }}
{{- fail (printf "config.shutdownTimeout (%s) must cover exec.stopTimeout (%s) + 1s to kill the command and release the leadership = %gs: the replica would exit before its command is stopped and its leadership released" .Values.config.shutdownTimeout $exec.stopTimeout $need) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
noLead.ordinals must name pods that exist and leave at least one that may lead: a list covering every
pod would leave the election without a candidate, and an ordinal past replicaCount is most likely a
typo (election-3 of three replicas does not exist). Not checked at replicaCount 0 (scaled to nothing).
*/}}
{{- define "election.noLeadCheck" -}}
{{- $replicas := int .Values.replicaCount }}
{{- $listed := 0 }}
{{- range .Values.noLead.ordinals }}
{{- if and (gt $replicas 0) (ge (int .) $replicas) }}
{{- fail (printf "noLead.ordinals: %d names no pod: with replicaCount %d the ordinals are 0-%d" (int .) $replicas (sub $replicas 1)) }}
{{- end }}
{{- $listed = add1 $listed }}
{{- end }}
{{- if and (gt $replicas 0) (ge $listed $replicas) }}
{{- fail (printf "noLead.ordinals lists all %d replicas: none could ever lead" $replicas) }}
{{- end }}
{{- end }}
