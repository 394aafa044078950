/**
 * Subnets: every subnet of the networks in view, with its network's name; add a subnet
 * to a network, delete one. Neutron refuses a CIDR that is invalid or overlaps another
 * subnet of the network, and the toast says so in its words. Adding or removing a subnet
 * changes its network too (its subnet list): both pages hear of it.
 */
import type { Subnet } from "@stalecast/bindings";
import { useMutation, useQuery } from "@tanstack/react-query";
import { useMemo, useState, type FormEvent } from "react";
import { ConfirmButton } from "../components/ConfirmButton";
import { NewButton } from "../components/NewButton";
import { PageHeader } from "../components/PageHeader";
import { QueryState } from "../components/QueryState";
import { ResourceTable, type Column } from "../components/ResourceTable";
import { useListInput } from "../lib/project";
import { useSession } from "../lib/session";
import { formatTimestamp } from "../lib/time";
import { useToasts } from "../lib/toasts";
import { useProjects } from "../lib/useProjects";
import { useTRPC } from "../trpc";
import { useAutoRefetch } from "../updates/useAutoRefetch";

const SUBNETS_COLUMNS: readonly Column[] = [
  { label: "Name" },
  { label: "CIDR" },
  { label: "Gateway" },
  { label: "DHCP" },
  { label: "Network" },
  { label: "Project" },
  { label: "Created" },
  { label: "Actions", className: "table__actions" },
];

export function SubnetsPage() {
  const trpc = useTRPC();
  const listInput = useListInput();
  const subnets = useQuery(trpc.networks.subnets.list.queryOptions(listInput));
  const networks = useQuery(trpc.networks.list.queryOptions(listInput));
  const networkNames = useMemo(() => new Map((networks.data ?? []).map((n) => [n.id, n.name])), [networks.data]);
  const { names } = useProjects();
  const { changed } = useAutoRefetch("subnets");
  const [creating, setCreating] = useState(false);
  const list = subnets.data ?? [];
  return (
    <div className="page">
      <PageHeader title="Subnets" type="subnets" count={subnets.data?.length}>
        <NewButton noun="subnet" open={creating} onToggle={() => setCreating((c) => !c)} />
      </PageHeader>
      {creating ? <CreateSubnet onDone={() => setCreating(false)} /> : null}
      <QueryState what="subnets" isPending={subnets.isPending} error={subnets.error} hasData={subnets.data !== undefined} onRetry={() => void subnets.refetch()}>
        <ResourceTable testId="subnets-table" columns={SUBNETS_COLUMNS} rows={list.length} empty="No subnets here.">
          {list.map((subnet) => (
            <SubnetRow
              key={subnet.id}
              subnet={subnet}
              network={networkNames.get(subnet.networkId)}
              project={names.get(subnet.projectId)}
              changed={changed.has(subnet.id)}
            />
          ))}
        </ResourceTable>
      </QueryState>
    </div>
  );
}

function SubnetRow({ subnet, network, project, changed }: { subnet: Subnet; network?: string; project?: string; changed: boolean }) {
  const trpc = useTRPC();
  const remove = useMutation(trpc.networks.subnets.delete.mutationOptions());
  const readOnly = useSession().whyReadOnly(subnet.projectId);
  return (
    <tr className={changed ? "row--changed" : undefined} data-id={subnet.id} data-name={subnet.name}>
      <td>
        <div className="cell-name">{subnet.name || <span className="muted">unnamed</span>}</div>
        <div className="cell-id mono">{subnet.id}</div>
      </td>
      <td className="mono">{subnet.cidr}</td>
      <td className="mono">{subnet.gatewayIp ?? <span className="muted">none</span>}</td>
      <td>{subnet.enableDhcp ? "on" : <span className="muted">off</span>}</td>
      <td>
        {network ? <div className="cell-name">{network}</div> : null}
        <div className="cell-id mono">{subnet.networkId}</div>
      </td>
      <td>{project ?? <span className="mono">{subnet.projectId}</span>}</td>
      <td className="muted">{formatTimestamp(subnet.createdAt)}</td>
      <td className="table__actions">
        <ConfirmButton
          label="Delete"
          busy={remove.isPending}
          disabled={readOnly !== null}
          title={readOnly ?? undefined}
          onConfirm={() => remove.mutate({ id: subnet.id })}
        />
      </td>
    </tr>
  );
}

function CreateSubnet({ onDone }: { onDone(): void }) {
  const trpc = useTRPC();
  const toasts = useToasts();
  const networks = useQuery(trpc.networks.list.queryOptions(useListInput()));
  const [networkId, setNetworkId] = useState("");
  const [cidr, setCidr] = useState("");
  const [name, setName] = useState("");
  const network = networkId || networks.data?.[0]?.id || "";
  const create = useMutation(
    trpc.networks.subnets.create.mutationOptions({
      onSuccess: (subnet) => {
        toasts.push({ tone: "ok", title: `Subnet ${subnet.cidr} created`, detail: `${subnet.id} · gateway ${subnet.gatewayIp ?? "none"}` });
        onDone();
      },
    }),
  );
  const submit = (event: FormEvent) => {
    event.preventDefault();
    create.mutate({ networkId: network, cidr: cidr.trim(), ...(name ? { name } : {}) });
  };
  return (
    <form className="form" onSubmit={submit} aria-label="New subnet">
      <label>
        Network
        <select name="networkId" value={network} onChange={(e) => setNetworkId(e.target.value)}>
          {(networks.data ?? []).map((n) => (
            <option key={n.id} value={n.id}>
              {n.name || n.id}
            </option>
          ))}
        </select>
      </label>
      <label className="form__narrow">
        CIDR
        <input name="cidr" value={cidr} onChange={(e) => setCidr(e.target.value)} required maxLength={64} placeholder="10.20.0.0/24" />
      </label>
      <label>
        Name
        <input name="name" value={name} onChange={(e) => setName(e.target.value)} maxLength={255} placeholder="optional" />
      </label>
      <button type="submit" className="btn btn--primary" disabled={create.isPending || !network}>
        {create.isPending ? "Creating…" : "Create subnet"}
      </button>
    </form>
  );
}
