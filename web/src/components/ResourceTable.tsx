/** The table every list page shows: its column headers, one row per item, and a line saying so when there is none. */
import type { ReactNode } from "react";

export interface Column {
  label: string;
  className?: string;
}

export function ResourceTable({
  testId,
  columns,
  rows,
  empty,
  children,
}: {
  testId: string;
  columns: readonly Column[];
  /** How many rows `children` holds. */
  rows: number;
  /** Shown instead of rows when there are none (omit for lists that are never empty). */
  empty?: string;
  children: ReactNode;
}) {
  return (
    <div className="table-wrap">
      <table className="table" data-testid={testId}>
        <thead>
          <tr>
            {columns.map((c) => (
              <th key={c.label} className={c.className}>
                {c.label}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows === 0 && empty !== undefined ? (
            <tr>
              <td colSpan={columns.length} className="table__empty">
                {empty}
              </td>
            </tr>
          ) : (
            children
          )}
        </tbody>
      </table>
    </div>
  );
}
