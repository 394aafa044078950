/**
 * Walking a server-side paged query (`….page`) one page at a time: the question a table
 * asks (filters, search, sort), the cursors walked for it, and the pager under the table.
 * A cursor belongs to its question (the server refuses it for another), so another
 * question starts at its first page in the same render, never with the old cursor.
 */
import { useEffect, useMemo, useState, type ReactNode } from "react";
import { QueryState } from "../components/QueryState";
import { ResourceTable, type Column } from "../components/ResourceTable";
import { useListInput } from "./project";

/** Rows per page. */
export const PAGE_SIZE = 50;

/** `value`, once it stopped changing for `ms` (a search box, typed into). */
export function useSettled<T>(value: T, ms: number): T {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setSettled(value), ms);
    return () => clearTimeout(timer);
  }, [value, ms]);
  return settled;
}

/** A table's question as the user sets it: the project filter, a search (settled after
 * typing), a status and a sort order. */
export function usePageQuestion(defaultSort: string) {
  const listInput = useListInput();
  const [typed, setTyped] = useState("");
  const search = useSettled(typed.trim(), 250);
  const [status, setStatus] = useState("");
  const [sort, setSort] = useState(defaultSort);
  const question = useMemo(
    () => ({ ...listInput, ...(search ? { search } : {}), ...(status ? { status } : {}), sort }),
    [listInput, search, status, sort],
  );
  const toolbar = { typed, onType: setTyped, status, onStatus: setStatus, sort, onSort: setSort };
  return { question, toolbar };
}

/** Where the pager stands: the question (its input as JSON) and the cursors walked. */
interface Walk {
  question: string;
  cursors: readonly (string | undefined)[];
  at: number;
}

export interface PageWalk {
  /** The cursor of the page to ask for (`undefined`: the first). */
  cursor: string | undefined;
  /** The page's index, from 0. */
  at: number;
  back(): void;
  /** Moves to the page after this one, which starts at `next`. */
  forward(next: string): void;
}

/** The pages walked for `question` (any value; compared as JSON). */
export function usePageWalk(question: unknown): PageWalk {
  const asked = JSON.stringify(question);
  const [kept, setWalk] = useState<Walk>({ question: asked, cursors: [undefined], at: 0 });
  const walk = kept.question === asked ? kept : { question: asked, cursors: [undefined], at: 0 };
  const { cursors, at } = walk;
  return {
    cursor: cursors[at],
    at,
    back: () => setWalk({ ...walk, at: Math.max(0, at - 1) }),
    forward: (next) => setWalk({ ...walk, cursors: [...cursors.slice(0, at + 1), next], at: at + 1 }),
  };
}

/** Previous / "51–100 of 36000" / Next under a paged table. */
export function Pager({
  walk,
  shown,
  total,
  next,
  waiting,
}: {
  walk: PageWalk;
  /** Rows on this page. */
  shown: number;
  total: number;
  /** The next page's cursor; `null` on the last page. */
  next: string | null;
  /** The page shown is the previous question's, while this one loads. */
  waiting: boolean;
}) {
  const first = walk.at * PAGE_SIZE;
  return (
    <nav className="pager" aria-label="Pages" data-testid="pager">
      <button type="button" className="btn" disabled={walk.at === 0} onClick={walk.back}>
        Previous
      </button>
      <span className="muted" data-testid="page-range">
        {shown === 0 ? "0" : `${first + 1}–${first + shown}`} of {total}
      </span>
      <button
        type="button"
        className="btn"
        disabled={next === null || waiting}
        onClick={() => {
          if (next !== null) walk.forward(next);
        }}
      >
        Next
      </button>
    </nav>
  );
}

/** A paged table's question: a search box, a status filter and a sort order. */
export function PageToolbar({
  what,
  typed,
  onType,
  status,
  onStatus,
  statuses,
  sort,
  onSort,
  sorts,
}: ReturnType<typeof usePageQuestion>["toolbar"] & {
  /** What the table lists, for the search box's label ("volumes"). */
  what: string;
  statuses: readonly string[];
  /** `[key, label]`: the server's sort keys (`-` for descending). */
  sorts: readonly (readonly [string, string])[];
}) {
  return (
    <div className="toolbar" role="search">
      <input
        type="search"
        name="search"
        aria-label={`Search ${what}`}
        placeholder="Search by name or id"
        value={typed}
        maxLength={255}
        onChange={(e) => onType(e.target.value)}
      />
      <select name="status" aria-label="Status" value={status} onChange={(e) => onStatus(e.target.value)}>
        <option value="">Any status</option>
        {statuses.map((s) => (
          <option key={s} value={s}>
            {s}
          </option>
        ))}
      </select>
      <select name="sort" aria-label="Sort" value={sort} onChange={(e) => onSort(e.target.value)}>
        {sorts.map(([key, label]) => (
          <option key={key} value={key}>
            {label}
          </option>
        ))}
      </select>
    </div>
  );
}

/** What a paged table needs of its `….page` query. */
interface PagedQuery<T> {
  data?: { items: T[]; total: number; nextCursor: string | null };
  isPending: boolean;
  error: unknown;
  isPlaceholderData: boolean;
  refetch(): unknown;
}

/** A paged table: its toolbar, the rows of the page shown, and the pager under them. */
export function PagedTable<T>({
  what,
  statuses,
  sorts,
  toolbar,
  walk,
  query,
  columns,
  testId,
  empty,
  rows,
}: {
  what: string;
  statuses: readonly string[];
  sorts: readonly (readonly [string, string])[];
  toolbar: ReturnType<typeof usePageQuestion>["toolbar"];
  walk: PageWalk;
  query: PagedQuery<T>;
  columns: readonly Column[];
  testId: string;
  empty: string;
  rows(items: T[]): ReactNode;
}) {
  const page = query.data;
  const items = page?.items ?? [];
  return (
    <>
      <PageToolbar what={what} statuses={statuses} sorts={sorts} {...toolbar} />
      <QueryState what={what} isPending={query.isPending} error={query.error} hasData={page !== undefined} onRetry={() => void query.refetch()}>
        <ResourceTable testId={testId} columns={columns} rows={items.length} empty={empty}>
          {rows(items)}
        </ResourceTable>
        <Pager walk={walk} shown={items.length} total={page?.total ?? 0} next={page?.nextCursor ?? null} waiting={query.isPlaceholderData} />
      </QueryState>
    </>
  );
}
